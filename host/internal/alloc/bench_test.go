package alloc

import (
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
)

// benchNode is 128 cores on 2 NUMA nodes, 512 GiB, and 8 GPUs (4 per node)
// as a discrete cuda.device map or a fractional cuda.shares map.
func benchNode(b *testing.B, fractional bool) *Allocator {
	b.Helper()
	cpu := cpuSpec(128, func(c int) int { return c / 64 })
	cuda := MapSpec{Kind: "cuda"}
	slot := "cuda.device"
	if fractional {
		cuda.Type, slot = Fractional, "cuda.shares"
	}
	for g := range 8 {
		cuda.Devices = append(cuda.Devices, Device{ID: fmt.Sprint(g), Slot: slot, Capacity: dec("1"), NUMANode: g / 4})
	}
	return mustAllocator(b, Config{}, cpu, memSpec(fmt.Sprint(int64(512)<<30)), cuda)
}

func benchmarkAllocateFree(b *testing.B, fractional bool, gpuSlot string) {
	a := benchNode(b, fractional)
	req := Slots{"cpu": dec("8"), "mem": decimal.NewFromInt(16 << 30), gpuSlot: dec("2")}
	b.ReportAllocs()
	startCPU := processCPUTime()
	for b.Loop() {
		res, err := a.Allocate(req)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Free(res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPUTime()-startCPU)/float64(b.N), "cpu-ns/op")
}

// BenchmarkAllocateDiscrete: {cpu: 8, mem: 16 GiB, cuda.device: 2}.
func BenchmarkAllocateDiscrete(b *testing.B) { benchmarkAllocateFree(b, false, "cuda.device") }

// BenchmarkAllocateFractional: {cpu: 8, mem: 16 GiB, cuda.shares: 2}.
func BenchmarkAllocateFractional(b *testing.B) { benchmarkAllocateFree(b, true, "cuda.shares") }
