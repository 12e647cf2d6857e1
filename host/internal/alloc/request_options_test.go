package alloc

import (
	"errors"
	"testing"
)

// TestAllocateWithRequestDeniesFragmentation: resource_opts'
// allow_fractional_resource_fragmentation = false (agent/agent.py
// create_kernel -> resources.py allocate) turns on the fragmentation guard
// for that request alone, on a map that allows fragmentation.
func TestAllocateWithRequestDeniesFragmentation(t *testing.T) {
	for _, tc := range []struct {
		description string
		opts        AllocateOptions
		wantDevices int   // devices the 1.0 share lands on
		wantErr     error // or the refusal
	}{
		{"fragmentation allowed (upstream's default): FILL splits 1.0 over gpu0 and gpu1, 0.6 free each", AllocateOptions{}, 2, nil},
		{"denied by the request: refused rather than split", AllocateOptions{DenyFragmentation: true}, 0, ErrFragmented},
	} {
		a := mustAllocator(t, Config{}, MapSpec{Kind: "cuda", Type: Fractional, Strategy: Fill, Quantum: dec("0.1"),
			Devices: uniformDevices("gpu", "cuda.shares", SlotCount, "1.0", "1.0")})
		if err := a.Apply(Allocation{"cuda": {"cuda.shares": {"gpu0": dec("0.4"), "gpu1": dec("0.4")}}}); err != nil {
			t.Fatal(err)
		}
		res, err := a.AllocateWith(Slots{"cuda.shares": dec("1.0")}, tc.opts)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: %v, %v; want %v", tc.description, formatAlloc(res["cuda"]), err, tc.wantErr)
			}
			continue
		}
		if err != nil || usedDevices(res["cuda"], "cuda.shares") != tc.wantDevices || !totalOf(res["cuda"], "cuda.shares").Equal(dec("1.0")) {
			t.Errorf("%s: %v, %v; want 1.0 over %d devices", tc.description, formatAlloc(res["cuda"]), err, tc.wantDevices)
		}
	}
}
