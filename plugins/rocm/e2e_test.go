package rocm_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/rocm"
	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

// TestEndToEnd drives the plugin as the agent does, over real gRPC:
// Describe, Configure, Describe again, then the kernel calls.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	if err := sysfsfixture.Extract("testdata/mi300x-8gpu-2numa.txtar", dir); err != nil {
		t.Fatal(err)
	}
	impl := rocm.New()
	t.Cleanup(impl.Close)
	client := sdk.TestClient(t, impl)
	ctx := context.Background()

	desc, err := client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := desc.Validate(); err != nil || desc.Name != "rocm" || desc.Kinds[0].SlotTypes[0].Name != "rocm.device" {
		t.Fatalf("description %+v: %v", desc, err)
	}

	err = client.Configure(ctx, sdk.ConfigureRequest{Config: map[string]any{"watch-interval": "never"}})
	var cerr *sdk.ConfigError
	if !errors.As(err, &cerr) || cerr.Problems[0].Key != "watch-interval" {
		t.Fatalf("bad config over the wire: %v", err)
	}

	devRoot := filepath.Join(dir, "dev")
	err = client.Configure(ctx, sdk.ConfigureRequest{
		APIVersion: sdk.APIVersion,
		Config:     map[string]any{"sysfs-root": filepath.Join(dir, "sys"), "dev-root": devRoot, "watch-interval": "30s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	desc, err = client.Describe(ctx)
	if err != nil || desc.ExtraInfo["device_count"] != "10" || desc.ExtraInfo["rocm_support"] != "true" {
		t.Fatalf("description after Configure %+v: %v", desc, err)
	}
	devs, err := client.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 10 || devs[0].NUMANode != 0 || devs[9].NUMANode != 1 || devs[9].Attributes["partition"] != "1" {
		t.Fatalf("devices %+v", devs)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := client.WatchDevices(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-updates; len(first) != 10 {
		t.Fatalf("first watch value %+v", first)
	}

	alloc := sdk.Allocation{"rocm.device": {"4": decimal.NewFromInt(1), "9": decimal.NewFromInt(1)}}
	spec, err := client.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: alloc, KernelID: "k-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Devices) != 5 || spec.Devices[0].ContainerPath != "/dev/kfd" || spec.Devices[0].HostPath != filepath.Join(devRoot, "kfd") ||
		spec.Devices[3].ContainerPath != "/dev/dri/renderD137" || spec.Env["HIP_VISIBLE_DEVICES"] != "0,1" || spec.Env["ROCR_VISIBLE_DEVICES"] != "0,1" {
		t.Fatalf("container spec %+v", spec)
	}
	if spec.ResourceData["ROCM_GLOBAL_DEVICE_IDS"] != "0:4,1:9" || len(spec.AttachedDevices) != 2 || strings.Join(spec.GroupAdd, ",") != "video,render" {
		t.Fatalf("resource data %v attached %v groups %v", spec.ResourceData, spec.AttachedDevices, spec.GroupAdd)
	}

	key, value := sdk.FormatShares("rocm.device", alloc["rocm.device"], false)
	restored, err := client.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: map[string]string{key: value, "CPU_SHARES": "0:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 1 || len(restored["rocm.device"]) != 2 || !restored["rocm.device"]["9"].Equal(decimal.NewFromInt(1)) {
		t.Fatalf("restored %v", restored)
	}

	metrics, err := client.NodeMetrics(ctx)
	if err != nil || len(metrics) != 4 {
		t.Fatalf("metrics %+v err %v", metrics, err)
	}
	hw, err := client.HardwareInfo(ctx)
	if err != nil || hw.Status != sdk.HealthHealthy || !strings.Contains(hw.StatusInfo, "10 ROCm devices") {
		t.Fatalf("hardware info %+v err %v", hw, err)
	}
}
