//go:build linux && cgo

package nvmldriver

import (
	"context"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver/nvmlmock"
)

// TestMemoryFromV2 checks that used memory is what nvidia-smi shows (v2)
// wherever the driver has v2, and v1 on drivers without it.
func TestMemoryFromV2(t *testing.T) {
	const v2 = "nvmlDeviceGetMemoryInfo_v2"
	cases := []struct {
		description string
		symbols     []string
		v2Answer    nvml.Return
		wantUsed    uint64
	}{
		{"driver with v2: used excludes the reservation", []string{v2}, nvml.SUCCESS, nvmlmock.H200UsedV2},
		{"driver without the v2 symbol: v1", nil, nvml.SUCCESS, nvmlmock.H200UsedV2 + nvmlmock.H200Reserved},
		{"v2 answers NOT_SUPPORTED: v1", []string{v2}, nvml.ERROR_NOT_SUPPORTED, nvmlmock.H200UsedV2 + nvmlmock.H200Reserved},
		{"v2 answers FUNCTION_NOT_FOUND: v1", []string{v2}, nvml.ERROR_FUNCTION_NOT_FOUND, nvmlmock.H200UsedV2 + nvmlmock.H200Reserved},
		{"v2 answers ARGUMENT_VERSION_MISMATCH: v1", []string{v2}, nvml.ERROR_ARGUMENT_VERSION_MISMATCH, nvmlmock.H200UsedV2 + nvmlmock.H200Reserved},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx := context.Background()
			d := newNVMLFrom(nvmlmock.Library(nvmlmock.GPU(tc.v2Answer), tc.symbols...))
			if err := d.Init(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := d.DeviceStatus(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if st.MemoryUsed == nil || *st.MemoryUsed != tc.wantUsed {
				t.Fatalf("used memory %v, want %d", st.MemoryUsed, tc.wantUsed)
			}
			if st.TemperatureCelsius == nil || *st.TemperatureCelsius != 59 {
				t.Fatalf("temperature %v, want 59 from the fallback", st.TemperatureCelsius)
			}
			info, err := d.DeviceInfo(ctx, 0)
			if err != nil || info.MemoryTotal != nvmlmock.H200Total || info.MultiprocessorCount != 132 {
				t.Fatalf("device info %+v, %v", info, err)
			}
		})
	}
}

// TestMemoryV2OtherErrorsAreNotHidden: a real failure of v2 (the GPU fell
// off the bus) must not be papered over with v1's answer.
func TestMemoryV2OtherErrorsAreNotHidden(t *testing.T) {
	ctx := context.Background()
	dev := nvmlmock.GPU(nvml.ERROR_GPU_IS_LOST)
	d := newNVMLFrom(nvmlmock.Library(dev, "nvmlDeviceGetMemoryInfo_v2"))
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := d.DeviceStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryUsed != nil {
		t.Fatalf("used memory %d reported for a lost GPU", *st.MemoryUsed)
	}
	if n := len(dev.GetMemoryInfoCalls()); n != 0 {
		t.Fatalf("v1 called %d times after v2 failed for real", n)
	}
}
