package nvmldriver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRealNVML checks the go-nvml driver against whatever this machine has.
// Without an NVIDIA driver it checks the missing-library answer instead, so
// it exercises the real code path on every machine.
func TestRealNVML(t *testing.T) {
	ctx := context.Background()
	d := NewNVML("")
	err := d.Init(ctx)
	if errors.Is(err, ErrLibraryNotFound) {
		// Every call must answer with an error, not kill the process with an
		// unresolved NVML symbol.
		calls := map[string]error{}
		_, calls["DriverVersion"] = d.DriverVersion(ctx)
		_, calls["DeviceCount"] = d.DeviceCount(ctx)
		_, calls["DeviceInfo"] = d.DeviceInfo(ctx, 0)
		_, calls["MigDevices"] = d.MigDevices(ctx, 0)
		_, calls["DeviceStatus"] = d.DeviceStatus(ctx, 0)
		_, calls["DeviceProcesses"] = d.DeviceProcesses(ctx, 0)
		_, _, calls["WaitEvent"] = d.WaitEvent(ctx, time.Millisecond)
		for name, callErr := range calls {
			if !errors.Is(callErr, ErrLibraryNotFound) {
				t.Errorf("%s without NVML: error %v, want ErrLibraryNotFound", name, callErr)
			}
		}
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown without NVML: %v", err)
		}
		t.Logf("no NVIDIA driver here (%v); only the missing-library path was checked", err)
		return
	}
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = d.Shutdown(ctx) })
	gpus, err := NewClient(d).GPUs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gpus {
		if !strings.HasPrefix(g.UUID, "GPU-") && !strings.HasPrefix(g.UUID, "MIG-") {
			t.Errorf("GPU %d: UUID %q", g.Index, g.UUID)
		}
		if g.MemoryTotal == 0 || g.Name == "" || NormalizeBusID(g.PCIBusID) == "" {
			t.Errorf("GPU %d: incomplete %+v", g.Index, g)
		}
		if g.IsMig() && g.Mig.Profile == "" {
			t.Errorf("MIG %s: no profile", g.UUID)
		}
		if _, err := d.DeviceStatus(ctx, g.Index); err != nil {
			t.Errorf("GPU %d status: %v", g.Index, err)
		}
	}
	t.Logf("%d GPUs: %+v", len(gpus), gpus)
}
