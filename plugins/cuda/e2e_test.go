package cuda_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda"
	"github.com/baiagent/baiagent/proto/sdk"
)

// TestEndToEnd drives the plugin as the agent does, over real gRPC.
func TestEndToEnd(t *testing.T) {
	impl := cuda.New()
	t.Cleanup(impl.Close)
	client := sdk.TestClient(t, impl)
	ctx := context.Background()

	desc, err := client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := desc.Validate(); err != nil || desc.Name != "cuda" || desc.Kinds[0].Key != "cuda" {
		t.Fatalf("description %+v: %v", desc, err)
	}

	err = client.Configure(ctx, sdk.ConfigureRequest{Config: map[string]any{"allocation-mode": "halves"}})
	var cerr *sdk.ConfigError
	if !errors.As(err, &cerr) || cerr.Problems[0].Key != "allocation-mode" {
		t.Fatalf("bad config over the wire: %v", err)
	}

	err = client.Configure(ctx, sdk.ConfigureRequest{
		APIVersion: sdk.APIVersion,
		Config: map[string]any{
			"fake-devices":   "../../configs/fixtures/cuda-2xA100.toml",
			"sysfs-root":     "../../configs/fixtures/sysfs-2xA100",
			"attach-method":  "auto",
			"ignored-xids":   []any{13, 31},
			"watch-interval": "30s",
		},
		Agent: sdk.AgentInfo{AgentID: "i-e2e", DockerVersion: "27.3.1", DockerRuntimes: []string{"runc", "nvidia"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := client.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].NUMANode != 0 || devs[1].NUMANode != 1 || devs[0].SlotName != "cuda.device" {
		t.Fatalf("devices %+v", devs)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := client.WatchDevices(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-updates; len(first) != 2 {
		t.Fatalf("first watch value %+v", first)
	}

	alloc := sdk.Allocation{"cuda.device": {"1": decimal.NewFromInt(1)}}
	spec, err := client.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: alloc, KernelID: "k-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.DeviceRequests) != 1 || spec.DeviceRequests[0].Driver != "nvidia" ||
		spec.DeviceRequests[0].DeviceIDs[0] != devs[1].UUID || spec.Env["CUDA_VISIBLE_DEVICES"] != "0" {
		t.Fatalf("container spec %+v", spec)
	}
	if spec.ResourceData["CUDA_GLOBAL_DEVICE_IDS"] != "0:1" || len(spec.AttachedDevices) != 1 {
		t.Fatalf("resource data %v attached %v", spec.ResourceData, spec.AttachedDevices)
	}

	key, value := sdk.FormatShares("cuda.device", alloc["cuda.device"], false)
	restored, err := client.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: map[string]string{key: value, "CPU_SHARES": "0:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 1 || !restored["cuda.device"]["1"].Equal(decimal.NewFromInt(1)) {
		t.Fatalf("restored %v", restored)
	}

	metrics, err := client.NodeMetrics(ctx)
	if err != nil || len(metrics) != 4 {
		t.Fatalf("metrics %+v err %v", metrics, err)
	}
	hw, err := client.HardwareInfo(ctx)
	if err != nil || hw.Status != sdk.HealthHealthy || !strings.Contains(hw.StatusInfo, "2 GPU") {
		t.Fatalf("hardware info %+v err %v", hw, err)
	}
	if hw.Metadata["attach_method"] != "device-request" {
		t.Fatalf("metadata %v", hw.Metadata)
	}
}
