package cuda

import (
	"context"
	"strconv"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
)

func metricByKey(ms []sdk.Metric) map[string]sdk.Metric {
	out := map[string]sdk.Metric{}
	for _, m := range ms {
		out[m.Key] = m
	}
	return out
}

func TestNodeMetrics(t *testing.T) {
	spec, _ := nvmldriver.LoadFakeSpec(fixture8GPU)
	p := configuredPlugin(t, fixtureConfig(nil), dockerAgent())
	ms, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byKey := metricByKey(ms)
	// Expected values derived from the fixture: every whole GPU, the MIG
	// parent excluded.
	var util, memUsed, memTotal, temp, power, powerCap decimal.Decimal
	n := 0
	for i, g := range spec.GPUs {
		if i == migParentIndex {
			continue
		}
		n++
		util = util.Add(decimal.NewFromInt(int64(*g.Utilization)))
		memUsed = memUsed.Add(decimal.NewFromUint64(uint64(g.MemoryUsed)))
		memTotal = memTotal.Add(decimal.NewFromUint64(uint64(g.Memory)))
		temp = temp.Add(decimal.NewFromInt(int64(*g.Temperature)))
		power = power.Add(decimal.New(int64(*g.PowerUsageMW), -3))
		powerCap = powerCap.Add(decimal.New(int64(*g.PowerLimitMW), -3))
	}
	tests := []struct {
		description string
		key         string
		unit        string
		value       decimal.Decimal
		capacity    *decimal.Decimal
	}{
		{"utilisation sums percentages over 100 per GPU", "cuda_util", "percent", util, ptr(decimal.NewFromInt(int64(100 * n)))},
		{"memory is used over total", "cuda_mem", "bytes", memUsed, &memTotal},
		{"temperature is the mean", "cuda_temp", "Celsius", temp.DivRound(decimal.NewFromInt(int64(n)), 1), nil},
		{"power in watts over the enforced limit", "cuda_power", "Watts", power, &powerCap},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			m, ok := byKey[tc.key]
			if !ok {
				t.Fatalf("metric %s missing from %v", tc.key, ms)
			}
			if m.UnitHint != tc.unit || m.PerNode == nil || !m.PerNode.Value.Equal(tc.value) {
				t.Fatalf("%s: unit %q per-node %+v, want %q %s", tc.key, m.UnitHint, m.PerNode, tc.unit, tc.value)
			}
			if (tc.capacity == nil) != (m.PerNode.Capacity == nil) || (tc.capacity != nil && !m.PerNode.Capacity.Equal(*tc.capacity)) {
				t.Fatalf("%s: capacity %v, want %v", tc.key, m.PerNode.Capacity, tc.capacity)
			}
			if len(m.PerDevice) != n {
				t.Fatalf("%s: %d devices, want %d", tc.key, len(m.PerDevice), n)
			}
			if _, ok := m.PerDevice[strconv.Itoa(migParentIndex)]; ok {
				t.Fatalf("%s: the MIG parent must not be measured", tc.key)
			}
		})
	}
	if got := byKey["cuda_util"].PerDevice["3"].Value; !got.Equal(decimal.NewFromInt(int64(*spec.GPUs[3].Utilization))) {
		t.Fatalf("GPU 3 utilisation %s", got)
	}
}

func TestNodeMetricsSkipsUnreportedGauges(t *testing.T) {
	spec := nvmldriver.FakeSpec{GPUs: []nvmldriver.FakeGPU{{
		UUID: "GPU-na", Name: "NVIDIA GeForce", Memory: 8 << 30, MemoryUsed: 1 << 30, PCIBusID: "0000:01:00.0",
	}}}
	p := configuredPlugin(t, map[string]any{keySysfsRoot: fixtureSysfs}, dockerAgent(), WithDriver(nvmldriver.NewFake(spec)))
	ms, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byKey := metricByKey(ms)
	if len(ms) != 1 || byKey["cuda_mem"].PerNode == nil {
		t.Fatalf("want only cuda_mem for a GPU without utilisation, temperature or power; got %+v", ms)
	}
}

func TestContainerMetrics(t *testing.T) {
	p := configuredPlugin(t, fixtureConfig(map[string]any{keyProcfsRoot: "testdata/procfs"}), dockerAgent())
	refs := []sdk.ContainerRef{
		// c1's init is a GPU process (4242, 3 GiB); 5151 (1 GiB) sits in a
		// child cgroup of c1.
		{ContainerID: "c1", PID: 4242, CgroupPath: "system.slice/docker-c1.scope"},
		// c2 is found through 4243's cgroup only (2 GiB on GPU 3).
		{ContainerID: "c2", PID: 9999, CgroupPath: "/system.slice/docker-c2.scope"},
		// c3 runs nothing on a GPU.
		{ContainerID: "c3", PID: 7777, CgroupPath: "system.slice/docker-c3.scope"},
	}
	ms, err := p.ContainerMetrics(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Key != "cuda_mem" {
		t.Fatalf("metrics %+v", ms)
	}
	per := ms[0].PerContainer
	gpuMem := decimal.NewFromInt(80 << 30)
	tests := []struct {
		description string
		id          string
		used        int64
	}{
		{"PID and child cgroup add up", "c1", 4 << 30},
		{"cgroup match alone", "c2", 2 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			m, ok := per[tc.id]
			if !ok || !m.Value.Equal(decimal.NewFromInt(tc.used)) || m.Capacity == nil || !m.Capacity.Equal(gpuMem) {
				t.Fatalf("%s: %+v, want %d bytes of %s", tc.id, m, tc.used, gpuMem)
			}
		})
	}
	if _, ok := per["c3"]; ok {
		t.Fatal("a container without GPU processes must be omitted")
	}
}

func ptr[T any](v T) *T { return &v }
