//go:build linux && cgo

package cuda

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver/nvmlmock"
)

// TestNodeCudaMemIsNVMLv2Used runs the plugin over the real NVML driver
// with go-nvml mocked below it: cuda_mem is v2's used memory (what
// nvidia-smi shows), not v1's, which counts the driver's reservation.
func TestNodeCudaMemIsNVMLv2Used(t *testing.T) {
	cases := []struct {
		description string
		symbols     []string
		want        uint64
	}{
		{"driver with memory info v2", []string{"nvmlDeviceGetMemoryInfo_v2"}, nvmlmock.H200UsedV2},
		{"old driver without v2 falls back to v1", nil, nvmlmock.H200UsedV2 + nvmlmock.H200Reserved},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			driver := nvmldriver.NewNVMLFromLibrary(nvmlmock.Library(nvmlmock.GPU(nvml.SUCCESS), tc.symbols...))
			p := configuredPlugin(t, map[string]any{keySysfsRoot: fixtureSysfs}, dockerAgent(), WithDriver(driver))
			metrics, err := p.NodeMetrics(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range metrics {
				if m.Key != "cuda_mem" {
					continue
				}
				dev, node := m.PerDevice["0"], m.PerNode
				if !dev.Value.Equal(decimal.NewFromUint64(tc.want)) || node == nil || !node.Value.Equal(dev.Value) {
					t.Fatalf("cuda_mem device %s node %+v, want %d", dev.Value, node, tc.want)
				}
				if dev.Capacity == nil || !dev.Capacity.Equal(decimal.NewFromUint64(nvmlmock.H200Total)) {
					t.Fatalf("cuda_mem capacity %v, want %d", dev.Capacity, uint64(nvmlmock.H200Total))
				}
				return
			}
			t.Fatalf("no cuda_mem in %+v", metrics)
		})
	}
}
