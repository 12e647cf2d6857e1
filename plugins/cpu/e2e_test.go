package cpu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
)

// TestOverGRPC drives the plugin the way the agent does, through the SDK
// client over a real gRPC connection.
func TestOverGRPC(t *testing.T) {
	root := fixture(t, "v2host")
	p := New(nil)
	client := sdk.TestClient(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	desc, err := client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := desc.Validate(); err != nil || desc.Name != "cpu" || len(desc.Kinds) != 2 {
		t.Fatalf("describe %+v: %v", desc, err)
	}

	err = client.Configure(ctx, sdk.ConfigureRequest{Config: map[string]any{keyCPUOvercommit: 42, "bogus": true}})
	var cerr *sdk.ConfigError
	if !errors.As(err, &cerr) || len(cerr.Problems) != 2 || cerr.Problems[0].Key != "bogus" || cerr.Problems[1].Key != keyCPUOvercommit {
		t.Fatalf("bad config over the wire: %v, want problems for bogus and %s", err, keyCPUOvercommit)
	}

	cfg := rootsConfig(root)
	cfg[keyCPUOvercommit] = 2
	if err := client.Configure(ctx, sdk.ConfigureRequest{APIVersion: sdk.APIVersion, Config: cfg}); err != nil {
		t.Fatal(err)
	}

	devs, err := client.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 11 || devs[0].ID != "2" || !devs[0].Capacity.Equal(dec("2")) || devs[2].NUMANode != 1 ||
		devs[10].ID != "root" || !devs[10].Capacity.Equal(dec("8589934592")) {
		t.Fatalf("devices over the wire: %+v", devs)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	updates, err := client.WatchDevices(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case first := <-updates:
		if len(first) != len(devs) {
			t.Fatalf("watch sent %d devices first, want %d", len(first), len(devs))
		}
	case <-ctx.Done():
		t.Fatal("watch sent nothing")
	}
	stopWatch()

	alloc := sdk.Allocation{"cpu": {"4": dec("2"), "10": dec("1")}, "mem": {"root": dec("2147483648")}}
	spec, err := client.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: alloc, KernelID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.CpusetCpus != "4,10" || spec.MemoryBytes != 2147483648 || spec.MemorySwapBytes != 2147483648 {
		t.Fatalf("spec over the wire: %+v", spec)
	}
	_, err = client.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: sdk.Allocation{"cpu": {"99": dec("1")}}})
	if err == nil || !strings.Contains(err.Error(), `core "99"`) {
		t.Fatalf("unknown core over the wire: %v", err)
	}

	data := map[string]string{}
	for slot, amounts := range alloc {
		k, v := sdk.FormatShares(slot, amounts, slot == "mem")
		data[k] = v
	}
	restored, err := client.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: data, CpusetCpus: spec.CpusetCpus, MemoryBytes: spec.MemoryBytes})
	if err != nil {
		t.Fatal(err)
	}
	if !allocationsEqual(restored, alloc) {
		t.Fatalf("restored %v, want %v", restored, alloc)
	}

	ms, err := client.ContainerMetrics(ctx, []sdk.ContainerRef{{ContainerID: "4f1c9a", CgroupPath: "/system.slice/docker-4f1c9a.scope"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := metricByKey(t, ms, "cpu_used").PerContainer["4f1c9a"].Value; !got.Equal(dec("2500")) {
		t.Fatalf("cpu_used over the wire %s, want 2500", got)
	}
	if _, err := client.NodeMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	hw, err := client.HardwareInfo(ctx)
	if err != nil || hw.Status != sdk.HealthHealthy || hw.Metadata["cores"] != "10" {
		t.Fatalf("hardware info over the wire: %+v, %v", hw, err)
	}
}

// BenchmarkListDevicesOverGRPC measures one ListDevices round trip through
// the SDK client on the v2 fixture (10 cores on 2 NUMA nodes).
func BenchmarkListDevicesOverGRPC(b *testing.B) {
	p := New(nil)
	client := sdk.TestClient(b, p)
	ctx := context.Background()
	if err := client.Configure(ctx, sdk.ConfigureRequest{Config: rootsConfig(fixture(b, "v2host"))}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		devs, err := client.ListDevices(ctx)
		if err != nil || len(devs) != 11 {
			b.Fatalf("%d devices, %v", len(devs), err)
		}
	}
}
