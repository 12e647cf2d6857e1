package stats

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/httpapi"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/proto/sdk"
)

// TestCUDAKernelStats runs the real cuda plugin as a subprocess on its fake
// NVML (configs/fixtures/cuda-2xA100.toml: two idle A100 80GB, no GPU
// process) under pluginhost, and checks the {kernel_id} the collector
// writes to a real Redis for a GPU kernel, as upstream cuda_open's
// gather_container_measures (accelerator/cuda_open/plugin.py, 26.8.1) and
// stats.py produce it: cuda_util at 0 with capacity N×100 and stats avg and
// max; cuda_mem with capacity the GPUs' total and stats max. A kernel
// without GPUs gets neither.
func TestCUDAKernelStats(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cuda plugin")
	}
	srv := redistest.Start(t, false)
	client := newClient(t, srv)
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.ShortTempDir(t)
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cuda/cmd/baiagent-plugin-cuda", dir, pluginhost.ExecutablePrefix+"cuda")

	// The kernels' init processes: the GPU kernel's environment carries
	// what the plugin's PrepareContainer put there.
	procfs := t.TempDir()
	const gpuPID, cpuPID = 4100001, 4100002
	gpus := "GPU-3b0e8f52-1c4d-4a7e-9d21-a10080gb0000,GPU-3b0e8f52-1c4d-4a7e-9d21-a10080gb0001"
	writeEnviron(t, procfs, gpuPID, "PATH=/usr/bin", "NVIDIA_VISIBLE_DEVICES="+gpus, "CUDA_VISIBLE_DEVICES=0,1")
	writeEnviron(t, procfs, cpuPID, "PATH=/usr/bin")

	host := pluginhost.New(pluginhost.Options{
		Dirs: []string{dir}, RuntimeDir: testutil.ShortTempDir(t), Logger: zerolog.Nop(),
		PluginConfig: map[string]map[string]any{"cuda": {
			"fake-devices":  filepath.Join(repo, "configs/fixtures/cuda-2xA100.toml"),
			"sysfs-root":    filepath.Join(repo, "configs/fixtures/sysfs-2xA100"),
			"procfs-root":   procfs,
			"attach-method": "auto",
		}},
		Agent: sdk.AgentInfo{AgentID: "i-agent", DockerVersion: "27.3.1", DockerRuntimes: []string{"runc", "nvidia"}},
	})
	ctx := context.Background()
	if err := host.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Stop)
	if _, _, ok := host.Plugin("cuda"); !ok {
		t.Fatalf("cuda plugin not running: %+v", host.Statuses())
	}

	containers := func(context.Context) ([]ContainerTarget, error) {
		return []ContainerTarget{
			{KernelID: "k-gpu", ContainerID: "c-gpu", PID: gpuPID, CgroupPath: "system.slice/docker-c-gpu.scope"},
			{KernelID: "k-cpu", ContainerID: "c-cpu", PID: cpuPID, CgroupPath: "system.slice/docker-c-cpu.scope"},
		}, nil
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0), step: 30 * time.Second}
	promMetrics := httpapi.NewMetrics()
	col, err := New(Options{AgentID: "i-agent", Redis: client, Plugins: host, Containers: containers,
		Now: clock.Now, Logger: zerolog.Nop(),
		OnNodeMetrics: func(plugin string, m []sdk.Metric) { promMetrics.SetPluginNodeMetrics("i-agent", plugin, m) }})
	if err != nil {
		t.Fatal(err)
	}
	// The node round feeds /metrics: the fake A100s' used memory (v2,
	// memory_used in the fixture) with its unit.
	if err := col.CollectNode(ctx); err != nil {
		t.Fatal(err)
	}
	checkPrometheusDeviceMetric(t, promMetrics, "cuda_mem", "1", "bytes", "current")
	checkPrometheusDeviceMetric(t, promMetrics, "cuda_util", "0", "percent", "capacity")
	for range 2 {
		if err := col.CollectContainers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := readMap(t, client, "k-gpu")
	const gpuMem = "171798691840" // 2 × 80 GiB
	cases := []struct {
		description string
		metric      string
		want        map[string]any
	}{
		{"cuda_util of two idle GPUs: 0 of 200, avg and max", "cuda_util",
			map[string]any{"current": "0", "capacity": "200", "pct": "0", "unit_hint": "percent",
				"stats.max": "0", "stats.avg": "0"}},
		{"cuda_mem with no GPU process yet: 0 of the GPUs' total, max", "cuda_mem",
			map[string]any{"current": "0", "capacity": gpuMem, "pct": "0", "unit_hint": "bytes", "stats.max": "0"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			checkMV(t, tc.description, lookup(t, got, tc.metric), tc.want)
		})
	}
	if n, _ := client.Exists(ctx, "k-cpu").Result(); n != 0 {
		t.Errorf("k-cpu written with only the cuda plugin measuring: %v", readMap(t, client, "k-cpu"))
	}
}

func writeEnviron(t *testing.T, procfs string, pid int, vars ...string) {
	t.Helper()
	dir := filepath.Join(procfs, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, v := range vars {
		data = append(data, v...)
		data = append(data, 0)
	}
	if err := os.WriteFile(filepath.Join(dir, "environ"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkPrometheusDeviceMetric finds backendai_device_utilization for a
// metric, device and value type, with the given unit.
func checkPrometheusDeviceMetric(t *testing.T, m *httpapi.Metrics, key, device, unit, valueType string) {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "backendai_device_utilization" {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["device_metric_name"] == key && labels["device_id"] == device && labels["value_type"] == valueType {
				if labels["unit"] != unit || labels["agent_id"] != "i-agent" {
					t.Fatalf("%s/%s labels %v, want unit %q", key, device, labels, unit)
				}
				return
			}
		}
	}
	t.Fatalf("no backendai_device_utilization for %s device %s %s", key, device, valueType)
}
