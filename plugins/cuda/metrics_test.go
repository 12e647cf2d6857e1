package cuda

import (
	"context"
	"slices"
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

// TestKernelGPUMetrics pins upstream cuda_open's gather_container_measures
// (accelerator/cuda_open/plugin.py, 26.8.1): every container given GPUs
// gets cuda_util = the sum of its GPUs' utilisation over N×100, even at 0,
// and cuda_mem = the memory used on its GPUs over their total, even before
// NVML lists a process of it. The GPUs come from the NVIDIA_VISIBLE_DEVICES
// in testdata/procfs/<pid>/environ.
func TestKernelGPUMetrics(t *testing.T) {
	p := configuredPlugin(t, fixtureConfig(map[string]any{keyProcfsRoot: "testdata/procfs"}), dockerAgent())
	refs := []sdk.ContainerRef{
		{ContainerID: "idle", PID: 6001},
		{ContainerID: "two", PID: 6002},
		{ContainerID: "mig", PID: 6003},
		// Both hold GPU 3 (fractional shares); 4243 (2 GiB) runs in shared-a.
		{ContainerID: "shared-a", PID: 6004, CgroupPath: "system.slice/docker-c2.scope"},
		{ContainerID: "shared-b", PID: 6005},
		{ContainerID: "all", PID: 6006},
		{ContainerID: "gone", PID: 999999},
	}
	ms, err := p.ContainerMetrics(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	byKey := metricByKey(ms)
	const gib = int64(1) << 30
	tests := []struct {
		description          string
		id                   string
		util, utilCap        int64 // utilCap 0: no cuda_util
		memUsed, memCapacity int64 // memCapacity 0: no cuda_mem
	}{
		{"one idle GPU: util 0 of 100, its device memory although no process runs", "idle", 0, 100, 1 * gib, 80 * gib},
		{"two GPUs (Docker's duplicate variable): utilisations and memory add up", "two", 10 + 20, 200, (2 + 3) * gib, 160 * gib},
		{"a MIG instance: no utilisation in NVML, memory of its processes over the instance's", "mig", 0, 0, 0, 40 * gib},
		{"a shared GPU: device utilisation, memory of the container's own processes", "shared-a", 30, 100, 2 * gib, 80 * gib},
		{"a shared GPU without processes yet: memory 0", "shared-b", 30, 100, 0, 80 * gib},
		{"NVIDIA_VISIBLE_DEVICES=all is not an allocation: nothing", "all", 0, 0, 0, 0},
		{"a container whose init process is gone: nothing", "gone", 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			u, hasUtil := byKey["cuda_util"].PerContainer[tc.id]
			if hasUtil != (tc.utilCap > 0) {
				t.Fatalf("cuda_util present %v, want %v (%+v)", hasUtil, tc.utilCap > 0, u)
			}
			if hasUtil && (!u.Value.Equal(decimal.NewFromInt(tc.util)) || u.Capacity == nil || !u.Capacity.Equal(decimal.NewFromInt(tc.utilCap))) {
				t.Errorf("cuda_util %s of %v, want %d of %d", u.Value, u.Capacity, tc.util, tc.utilCap)
			}
			m, hasMem := byKey["cuda_mem"].PerContainer[tc.id]
			if hasMem != (tc.memCapacity > 0) {
				t.Fatalf("cuda_mem present %v, want %v (%+v)", hasMem, tc.memCapacity > 0, m)
			}
			if hasMem && (!m.Value.Equal(decimal.NewFromInt(tc.memUsed)) || m.Capacity == nil || !m.Capacity.Equal(decimal.NewFromInt(tc.memCapacity))) {
				t.Errorf("cuda_mem %s of %v, want %d of %d", m.Value, m.Capacity, tc.memUsed, tc.memCapacity)
			}
		})
	}
	if byKey["cuda_util"].Type != sdk.MetricUtilization || byKey["cuda_util"].UnitHint != "percent" || byKey["cuda_mem"].UnitHint != "bytes" {
		t.Errorf("metric types/units: %+v", ms)
	}
}

// TestParseVisibleDevices covers reading NVIDIA_VISIBLE_DEVICES back from
// a container's environment (the plugin's replacement for upstream's
// HostConfig.DeviceRequests lookup, which misses CDI and runtime attaches).
func TestParseVisibleDevices(t *testing.T) {
	tests := []struct {
		description string
		environ     string
		want        []string
	}{
		{"one UUID among other variables", "A=1\x00NVIDIA_VISIBLE_DEVICES=GPU-a\x00B=2\x00", []string{"GPU-a"}},
		{"a list with spaces and an empty entry", "NVIDIA_VISIBLE_DEVICES=GPU-a, GPU-b,,\x00", []string{"GPU-a", "GPU-b"}},
		{"the last occurrence wins", "NVIDIA_VISIBLE_DEVICES=all\x00NVIDIA_VISIBLE_DEVICES=0,1", []string{"0", "1"}},
		{"all is not an allocation", "NVIDIA_VISIBLE_DEVICES=all\x00", nil},
		{"none is not an allocation", "NVIDIA_VISIBLE_DEVICES=none\x00", nil},
		{"void is not an allocation", "NVIDIA_VISIBLE_DEVICES=void\x00", nil},
		{"empty (the runtime attach with no GPU)", "NVIDIA_VISIBLE_DEVICES=\x00", nil},
		{"absent", "PATH=/bin\x00", nil},
		{"a longer name is not the variable", "XNVIDIA_VISIBLE_DEVICES=GPU-a\x00", nil},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, ok := parseVisibleDevices([]byte(tc.environ))
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q ok %v, want %q", got, ok, tc.want)
			}
		})
	}
}

// TestKernelGPUMeasures covers the sum behind one container's cuda_util and
// cuda_mem (upstream cuda_open/plugin.py gather_container_measures).
func TestKernelGPUMeasures(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	whole := func(total uint64) gpuEntry { return gpuEntry{GPU: nvmldriver.GPU{MemoryTotal: total}} }
	mig := gpuEntry{GPU: nvmldriver.GPU{MemoryTotal: 10, Mig: &nvmldriver.MigOf{Profile: "1g.10gb"}}}
	tests := []struct {
		description       string
		samples           []gpuSample
		util, utilCap     string // "" for no cuda_util
		memUsed, memTotal string // "" for no cuda_mem
	}{
		{"no GPU: nothing", nil, "", "", "", ""},
		{"idle exclusive GPU reports 0 of 100", []gpuSample{{gpu: whole(80), exclusive: true,
			status: &nvmldriver.DeviceStatus{GPUUtilization: u32(0), MemoryUsed: u64(0)}}}, "0", "100", "0", "80"},
		{"two exclusive GPUs sum", []gpuSample{
			{gpu: whole(80), exclusive: true, status: &nvmldriver.DeviceStatus{GPUUtilization: u32(40), MemoryUsed: u64(5)}},
			{gpu: whole(40), exclusive: true, status: &nvmldriver.DeviceStatus{GPUUtilization: u32(100), MemoryUsed: u64(7)}},
		}, "140", "200", "12", "120"},
		{"a shared GPU counts process memory, not the device's", []gpuSample{{gpu: whole(80), processMemory: 3,
			status: &nvmldriver.DeviceStatus{GPUUtilization: u32(50), MemoryUsed: u64(60)}}}, "50", "100", "3", "80"},
		{"MIG: no utilisation, process memory", []gpuSample{{gpu: mig, processMemory: 2}}, "", "", "2", "10"},
		{"failed sample: memory total only, no utilisation", []gpuSample{{gpu: whole(80), exclusive: true}}, "", "", "0", "80"},
		{"a GPU without utilisation support is left out of util and its capacity", []gpuSample{
			{gpu: whole(80), exclusive: true, status: &nvmldriver.DeviceStatus{MemoryUsed: u64(1)}},
			{gpu: whole(80), exclusive: true, status: &nvmldriver.DeviceStatus{GPUUtilization: u32(7), MemoryUsed: u64(1)}},
		}, "7", "100", "2", "160"},
	}
	check := func(t *testing.T, what string, m *sdk.Measurement, value, capacity string) {
		t.Helper()
		if (m == nil) != (value == "") {
			t.Fatalf("%s = %+v, want %q", what, m, value)
		}
		if m != nil && (!m.Value.Equal(dec(value)) || m.Capacity == nil || !m.Capacity.Equal(dec(capacity))) {
			t.Errorf("%s = %s of %v, want %s of %s", what, m.Value, m.Capacity, value, capacity)
		}
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			util, mem := kernelGPUMeasures(tc.samples)
			check(t, "cuda_util", util, tc.util, tc.utilCap)
			check(t, "cuda_mem", mem, tc.memUsed, tc.memTotal)
		})
	}
}
