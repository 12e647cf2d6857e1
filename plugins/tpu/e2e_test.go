package tpu_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/tpu"
	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

// TestEndToEnd drives the plugin as the agent does, over real gRPC:
// Describe, Configure, Describe again, then the kernel calls.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	if err := sysfsfixture.Extract("testdata/tpu-v4-4chip.txtar", dir); err != nil {
		t.Fatal(err)
	}
	impl := tpu.New()
	t.Cleanup(impl.Close)
	client := sdk.TestClient(t, impl)
	ctx := context.Background()

	desc, err := client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := desc.Validate(); err != nil || desc.Name != "tpu" || desc.Kinds[0].SlotTypes[0].Name != "tpu.device" {
		t.Fatalf("description %+v: %v", desc, err)
	}
	err = client.Configure(ctx, sdk.ConfigureRequest{Config: map[string]any{"device-mask": 0.0}})
	var cerr *sdk.ConfigError
	if !errors.As(err, &cerr) || cerr.Problems[0].Key != "device-mask" {
		t.Fatalf("bad config over the wire: %v", err)
	}
	devRoot := filepath.Join(dir, "dev")
	err = client.Configure(ctx, sdk.ConfigureRequest{
		APIVersion: sdk.APIVersion,
		Config:     map[string]any{"sysfs-root": filepath.Join(dir, "sys"), "dev-root": devRoot},
	})
	if err != nil {
		t.Fatal(err)
	}
	desc, err = client.Describe(ctx)
	if err != nil || desc.ExtraInfo["device_count"] != "4" || desc.ExtraInfo["tpu_support"] != "true" {
		t.Fatalf("description after Configure %+v: %v", desc, err)
	}
	devs, err := client.ListDevices(ctx)
	if err != nil || len(devs) != 4 || devs[3].NUMANode != 1 || devs[0].Model != "TPU v4" {
		t.Fatalf("devices %+v: %v", devs, err)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := client.WatchDevices(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-updates; len(first) != 4 {
		t.Fatalf("first watch value %+v", first)
	}

	alloc := sdk.Allocation{"tpu.device": {"0": decimal.NewFromInt(1), "1": decimal.NewFromInt(1), "2": decimal.NewFromInt(1), "3": decimal.NewFromInt(1)}}
	spec, err := client.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: alloc, KernelID: "k-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Devices) != 4 || spec.Devices[2].HostPath != filepath.Join(devRoot, "accel2") || spec.Devices[2].ContainerPath != "/dev/accel2" ||
		spec.Env["TPU_VISIBLE_CHIPS"] != "0,1,2,3" || spec.Env["TPU_CHIPS_PER_PROCESS_BOUNDS"] != "2,2,1" || spec.Env["TPU_PROCESS_BOUNDS"] != "1,1,1" {
		t.Fatalf("container spec %+v", spec)
	}
	if spec.ResourceData["TPU_GLOBAL_DEVICE_IDS"] != "0:0,1:1,2:2,3:3" || len(spec.AttachedDevices) != 4 {
		t.Fatalf("resource data %v attached %v", spec.ResourceData, spec.AttachedDevices)
	}
	key, value := sdk.FormatShares("tpu.device", alloc["tpu.device"], false)
	restored, err := client.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: map[string]string{key: value}})
	if err != nil || len(restored["tpu.device"]) != 4 {
		t.Fatalf("restored %v: %v", restored, err)
	}
	metrics, err := client.NodeMetrics(ctx)
	if err != nil || len(metrics) != 0 {
		t.Fatalf("metrics %+v err %v", metrics, err)
	}
	hw, err := client.HardwareInfo(ctx)
	if err != nil || hw.Status != sdk.HealthHealthy || !strings.Contains(hw.StatusInfo, "4 TPU chips") {
		t.Fatalf("hardware info %+v err %v", hw, err)
	}
}
