package alloc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

func affinityDevicesOf(maps ...*DeviceMap) []affinity.Device {
	var out []affinity.Device
	for _, m := range maps {
		for i := range m.devices {
			out = append(out, m.affinityDevice(i))
		}
	}
	return out
}

func numaDevices(kind, slot string, capacity string, spec ...struct {
	id   string
	numa int
}) []Device {
	out := make([]Device, len(spec))
	for i, s := range spec {
		out[i] = Device{ID: s.id, Slot: slot, SlotKind: SlotCount, Capacity: dec(capacity), NUMANode: s.numa}
	}
	return out
}

type idNUMA = struct {
	id   string
	numa int
}

// TestAffinityAllocationFixtures is the rest of fixture 19
// (test_affinity_map.py), with one map per device kind as the agent has.
func TestAffinityAllocationFixtures(t *testing.T) {
	for _, strategy := range []Strategy{Evenly, Fill} {
		t.Run(fmt.Sprintf("%s: nodes {a0,a1},{a2,a3}: 1 -> a0; slot y -> configuration error; 2 -> a2, a3", strategy), func(t *testing.T) {
			m := mustMap(t, MapSpec{Kind: "x", Strategy: strategy, Devices: numaDevices("x", "x", "1",
				idNUMA{"a0", 0}, idNUMA{"a1", 0}, idNUMA{"a2", 1}, idNUMA{"a3", 1})})
			amap := affinity.Build(affinityDevicesOf(m))
			hint := func() *AffinityHint { return &AffinityHint{Map: amap, Policy: affinity.PreferSingleNode} }
			res, err := m.Allocate(Slots{"x": dec("1")}, hint())
			checkErr(t, err, nil)
			checkResult(t, res, map[string]map[string]string{"x": {"a0": "1"}})
			_, err = m.Allocate(Slots{"y": dec("1")}, hint())
			checkErr(t, err, ErrConfiguration)
			if errors.Is(err, ErrResource) {
				t.Errorf("a configuration error must not be a resource error: %v", err)
			}
			_, err = m.Allocate(Slots{"x": dec("2")}, hint())
			checkErr(t, err, nil)
			checkState(t, m, map[string]string{"a0": "1", "a1": "0", "a2": "1", "a3": "1"}, true)
		})

		t.Run(fmt.Sprintf("%s: GPUs x1, x3 allocated on nodes 1 and 3, then cpu 4 -> b0, b1, d0, d1", strategy), func(t *testing.T) {
			var cores []idNUMA
			for node, prefix := range []string{"a", "b", "c", "d"} {
				for k := range 3 {
					cores = append(cores, idNUMA{fmt.Sprintf("%s%d", prefix, k), node})
				}
			}
			cpu := mustMap(t, MapSpec{Kind: "cpu", Strategy: strategy, Devices: numaDevices("cpu", "cpu", "1", cores...)})
			cuda := mustMap(t, MapSpec{Kind: "cuda", Strategy: strategy, Devices: numaDevices("cuda", "cuda", "1",
				idNUMA{"x0", 0}, idNUMA{"x1", 1}, idNUMA{"x2", 2}, idNUMA{"x3", 3})})
			amap := affinity.Build(affinityDevicesOf(cpu, cuda))
			if got := len(amap.Clusters("cuda")); got != 4 {
				t.Fatalf("%d cuda clusters, want one per NUMA node", got)
			}
			checkErr(t, cuda.Apply(deviceAllocOf(map[string]map[string]string{"cuda": {"x1": "1", "x3": "1"}})), nil)
			hint := &AffinityHint{Map: amap, Policy: affinity.PreferSingleNode,
				Devices: []affinity.Device{cuda.affinityDevice(1), cuda.affinityDevice(3)}}
			_, err := cpu.Allocate(Slots{"cpu": dec("4")}, hint)
			checkErr(t, err, nil)
			checkState(t, cpu, map[string]string{"b0": "1", "b1": "1", "d0": "1", "d1": "1"}, true)
		})

		t.Run(fmt.Sprintf("%s: integrated: cuda 2 on two nodes, then cpu 4 -> 2 cores on each of those nodes", strategy), func(t *testing.T) {
			var cores []Device
			for node, prefix := range []string{"a", "b", "c", "d"} {
				for k := range 3 {
					cores = append(cores, Device{ID: fmt.Sprintf("%s%d", prefix, k), Slot: "cpu", Capacity: dec("1"), NUMANode: node})
				}
			}
			a, err := NewAllocator(Config{AllocationOrder: []string{"cuda", "cpu"}, AffinityPolicy: affinity.PreferSingleNode}, []MapSpec{
				{Kind: "cpu", Strategy: strategy, Devices: cores},
				{Kind: "cuda", Strategy: strategy, Devices: numaDevices("cuda", "cuda", "1", idNUMA{"x0", 0}, idNUMA{"x1", 1}, idNUMA{"x2", 2}, idNUMA{"x3", 3})},
			})
			checkErr(t, err, nil)
			res, err := a.Allocate(Slots{"cuda": dec("2"), "cpu": dec("4")})
			checkErr(t, err, nil)
			gpuNodes := map[int]bool{}
			for id := range res["cuda"]["cuda"] {
				gpuNodes[int(id[1]-'0')] = true
			}
			perNode := map[int]int64{}
			for id, v := range res["cpu"]["cpu"] {
				perNode[int(id[0]-'a')] += v.IntPart()
			}
			if len(gpuNodes) != 2 {
				t.Fatalf("cuda went to nodes %v, want two", gpuNodes)
			}
			for node := range 4 {
				want := int64(0)
				if gpuNodes[node] {
					want = 2
				}
				if perNode[node] != want {
					t.Errorf("node %d got %d cores, want %d (cuda nodes %v, cpu %s)", node, perNode[node], want, gpuNodes, formatAlloc(res["cpu"]))
				}
			}
		})

		t.Run(fmt.Sprintf("%s: 144 cores with 24 busy, npu0-2 busy: npu 1 -> npu3, then cpu 8 all on npu3's node", strategy), func(t *testing.T) {
			var cores []Device
			core := 0
			for _, chunk := range []struct{ node, count int }{{0, 36}, {1, 36}, {0, 36}, {1, 36}} {
				for range chunk.count {
					cores = append(cores, Device{ID: fmt.Sprint(core), Slot: "cpu", Capacity: dec("1"), NUMANode: chunk.node})
					core++
				}
			}
			cpu := mustMap(t, MapSpec{Kind: "cpu", Strategy: strategy, Devices: cores})
			npu := mustMap(t, MapSpec{Kind: "npu", Strategy: strategy, Devices: numaDevices("npu", "npu", "1",
				idNUMA{"npu0", 0}, idNUMA{"npu1", 0}, idNUMA{"npu2", 1}, idNUMA{"npu3", 1})})
			busy := map[string]string{}
			for c := range 24 {
				busy[fmt.Sprint(c)] = "1"
			}
			checkErr(t, cpu.Apply(deviceAllocOf(map[string]map[string]string{"cpu": busy})), nil)
			checkErr(t, npu.Apply(deviceAllocOf(map[string]map[string]string{"npu": {"npu0": "1", "npu1": "1", "npu2": "1"}})), nil)
			hint := &AffinityHint{Map: affinity.Build(affinityDevicesOf(cpu, npu)), Policy: affinity.PreferSingleNode}
			res, err := npu.Allocate(Slots{"npu": dec("1")}, hint)
			checkErr(t, err, nil)
			checkResult(t, res, map[string]map[string]string{"npu": {"npu3": "1"}})
			res, err = cpu.Allocate(Slots{"cpu": dec("8")}, hint)
			checkErr(t, err, nil)
			for id, v := range res["cpu"] {
				if cpu.devices[cpu.index[id]].NUMANode != 1 && v.Sign() > 0 {
					t.Errorf("core %s on node 0 got %s", id, v)
				}
			}
			if got := totalOf(res, "cpu"); !got.Equal(dec("8")) {
				t.Errorf("total %s, want 8", got)
			}
		})

		t.Run(fmt.Sprintf("%s: 9 CPUs x 4 cores, GPUs on nodes 1 and 2, cpu 26 spills to node 0", strategy), func(t *testing.T) {
			var cpus []idNUMA
			for k := range 9 {
				cpus = append(cpus, idNUMA{fmt.Sprintf("cpu%d", k), k / 3})
			}
			cpu := mustMap(t, MapSpec{Kind: "cpu", Strategy: strategy, Devices: numaDevices("cpu", "cpu", "4", cpus...)})
			cuda := mustMap(t, MapSpec{Kind: "cuda", Strategy: strategy, Devices: numaDevices("cuda", "cuda", "1",
				idNUMA{"gpu0", 0}, idNUMA{"gpu1", 1}, idNUMA{"gpu2", 2})})
			hint := &AffinityHint{Map: affinity.Build(affinityDevicesOf(cpu, cuda)), Policy: affinity.PreferSingleNode,
				Devices: []affinity.Device{cuda.affinityDevice(1), cuda.affinityDevice(2)}}
			res, err := cpu.Allocate(Slots{"cpu": dec("26")}, hint)
			checkErr(t, err, nil)
			perNode := [3]int64{}
			full := 0
			for id, v := range res["cpu"] {
				perNode[cpu.devices[cpu.index[id]].NUMANode] += v.IntPart()
				if v.Equal(dec("4")) {
					full++
				}
			}
			want := [3]int64{8, 9, 9}
			if strategy == Fill {
				want = [3]int64{2, 12, 12}
				if full != 6 {
					t.Errorf("FILL used %d CPUs fully, want 6", full)
				}
			}
			if perNode != want {
				t.Errorf("per node %v, want %v (%s)", perNode, want, formatAlloc(res))
			}
		})
	}

	t.Run("FILL: npu1 simulated, cuda fractional 1.5 uses node 1 and one other node, then cpu 3", func(t *testing.T) {
		cpu := mustMap(t, MapSpec{Kind: "cpu", Strategy: Fill, Devices: numaDevices("cpu", "cpu", "1",
			idNUMA{"cpu0", 0}, idNUMA{"cpu1", 0}, idNUMA{"cpu2", 1}, idNUMA{"cpu3", 1}, idNUMA{"cpu4", 2}, idNUMA{"cpu5", 2})})
		cuda := mustMap(t, MapSpec{Kind: "cuda", Type: Fractional, Strategy: Fill, Devices: numaDevices("cuda", "cuda", "1.0",
			idNUMA{"gpu0", 0}, idNUMA{"gpu1", 1}, idNUMA{"gpu2", 2})})
		npu := mustMap(t, MapSpec{Kind: "npu", Strategy: Fill, Devices: numaDevices("npu", "npu", "1",
			idNUMA{"npu0", 0}, idNUMA{"npu1", 1}, idNUMA{"npu2", 2})})
		checkErr(t, npu.Apply(deviceAllocOf(map[string]map[string]string{"npu": {"npu1": "1"}})), nil)
		hint := &AffinityHint{Map: affinity.Build(affinityDevicesOf(cpu, cuda, npu)), Policy: affinity.PreferSingleNode,
			Devices: []affinity.Device{npu.affinityDevice(1)}}
		res, err := cuda.Allocate(Slots{"cuda": dec("1.5")}, hint)
		checkErr(t, err, nil)
		if got := totalOf(res, "cuda"); !got.Equal(dec("1.5")) {
			t.Errorf("cuda total %s, want 1.5", got)
		}
		if res["cuda"]["gpu1"].Sign() <= 0 || usedDevices(res, "cuda") != 2 {
			t.Errorf("cuda %s: want gpu1 and exactly one other device", formatAlloc(res))
		}
		res, err = cpu.Allocate(Slots{"cpu": dec("3")}, hint)
		checkErr(t, err, nil)
		if got := totalOf(res, "cpu"); !got.Equal(dec("3")) {
			t.Errorf("cpu total %s, want 3", got)
		}
	})

	t.Run("interleaved policy spreads the first kind over NUMA nodes", func(t *testing.T) {
		m := mustMap(t, MapSpec{Kind: "x", Devices: numaDevices("x", "x", "1",
			idNUMA{"a0", 0}, idNUMA{"a1", 0}, idNUMA{"a2", 1}, idNUMA{"a3", 1})})
		res, err := m.Allocate(Slots{"x": dec("2")}, &AffinityHint{Map: affinity.Build(affinityDevicesOf(m)), Policy: affinity.Interleaved})
		checkErr(t, err, nil)
		checkResult(t, res, map[string]map[string]string{"x": {"a0": "1", "a2": "1"}})
	})
}
