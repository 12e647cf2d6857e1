package cpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// rootsConfig points the plugin at root/{sys,proc,cgroup}.
func rootsConfig(root string) map[string]any {
	return map[string]any{
		keySysfsRoot:  filepath.Join(root, "sys"),
		keyProcfsRoot: filepath.Join(root, "proc"),
		keyCgroupRoot: filepath.Join(root, "cgroup"),
	}
}

// newFixturePlugin returns a plugin configured on a fixture tree, with the
// non-file fallbacks faked so the machine running the test does not matter.
func newFixturePlugin(t testing.TB, root string, extra map[string]any) *Plugin {
	t.Helper()
	p := New(nil)
	p.newReader = func(c config) hostReader {
		h := newHostReader(c.sysfsRoot, c.procfsRoot, c.cgroupRoot)
		h.affinity = func() ([]int, error) { return nil, errors.New("faked out") }
		h.numCPU = func() int { return 2 }
		return h
	}
	cfg := rootsConfig(root)
	for k, v := range extra {
		cfg[k] = v
	}
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{APIVersion: sdk.APIVersion, Config: cfg}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

func TestDescribe(t *testing.T) {
	d, err := New(nil).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("description does not validate: %v", err)
	}
	if d.Name != "cpu" || !slices.Equal(d.Keys(), []string{"cpu", "mem"}) {
		t.Fatalf("name %q keys %v, want cpu with kinds cpu, mem", d.Name, d.Keys())
	}
	cpu, mem := d.Kinds[0], d.Kinds[1]
	if cpu.SlotTypes[0].Kind != sdk.SlotCount || cpu.AllocMap.Strategy != sdk.StrategyEvenly || cpu.AllocMap.Kind != sdk.AllocDiscrete {
		t.Errorf("cpu kind %+v, want a count slot on a discrete EVENLY map", cpu)
	}
	if mem.SlotTypes[0].Kind != sdk.SlotBytes || mem.AllocMap.Strategy != sdk.StrategyFill || mem.AllocMap.Kind != sdk.AllocDiscrete {
		t.Errorf("mem kind %+v, want a bytes slot on a discrete FILL map", mem)
	}
	if cpu.SlotTypes[0].DisplayUnit != "Core" || mem.SlotTypes[0].DisplayUnit != "GiB" || !mem.SlotTypes[0].NumberFormat.Binary {
		t.Errorf("display metadata differs from upstream: %+v %+v", cpu.SlotTypes[0], mem.SlotTypes[0])
	}
}

func TestConfigure(t *testing.T) {
	v2 := fixture(t, "v2host")
	aFile := filepath.Join(v2, "proc", "meminfo")
	cases := []struct {
		description string
		config      map[string]any
		wantKeys    []string // keys named by the ConfigError, in order
		wantReason  string
	}{
		{description: "defaults with fixture roots", config: rootsConfig(v2)},
		{description: "overcommit factors and interval", config: merge(rootsConfig(v2), map[string]any{
			keyCPUOvercommit: float64(4), keyMemOvercommit: "1.5", keyWatchInterval: "5s",
		})},
		{description: "interval as seconds", config: merge(rootsConfig(v2), map[string]any{keyWatchInterval: float64(2)})},
		{description: "cpu factor above 10", config: merge(rootsConfig(v2), map[string]any{keyCPUOvercommit: float64(11)}),
			wantKeys: []string{keyCPUOvercommit}, wantReason: "from 1 to 10"},
		{description: "cpu factor below 1", config: merge(rootsConfig(v2), map[string]any{keyCPUOvercommit: float64(0)}),
			wantKeys: []string{keyCPUOvercommit}, wantReason: "from 1 to 10"},
		{description: "fractional cpu factor", config: merge(rootsConfig(v2), map[string]any{keyCPUOvercommit: 1.5}),
			wantKeys: []string{keyCPUOvercommit}, wantReason: "whole number"},
		{description: "cpu factor of the wrong type", config: merge(rootsConfig(v2), map[string]any{keyCPUOvercommit: true}),
			wantKeys: []string{keyCPUOvercommit}, wantReason: "must be a number"},
		{description: "mem factor below 1", config: merge(rootsConfig(v2), map[string]any{keyMemOvercommit: 0.5}),
			wantKeys: []string{keyMemOvercommit}, wantReason: "at least 1"},
		{description: "mem factor not a number", config: merge(rootsConfig(v2), map[string]any{keyMemOvercommit: "lots"}),
			wantKeys: []string{keyMemOvercommit}, wantReason: `got "lots"`},
		{description: "relative root", config: merge(rootsConfig(v2), map[string]any{keySysfsRoot: "sys"}),
			wantKeys: []string{keySysfsRoot}, wantReason: "absolute path"},
		{description: "missing root", config: merge(rootsConfig(v2), map[string]any{keyProcfsRoot: "/nonexistent/proc"}),
			wantKeys: []string{keyProcfsRoot}, wantReason: "no such file"},
		{description: "root is a file", config: merge(rootsConfig(v2), map[string]any{keyCgroupRoot: aFile}),
			wantKeys: []string{keyCgroupRoot}, wantReason: "not a directory"},
		{description: "root of the wrong type", config: merge(rootsConfig(v2), map[string]any{keyCgroupRoot: float64(1)}),
			wantKeys: []string{keyCgroupRoot}, wantReason: "path string"},
		{description: "interval too short", config: merge(rootsConfig(v2), map[string]any{keyWatchInterval: "1ms"}),
			wantKeys: []string{keyWatchInterval}, wantReason: "from 100ms"},
		{description: "interval garbage", config: merge(rootsConfig(v2), map[string]any{keyWatchInterval: "soon"}),
			wantKeys: []string{keyWatchInterval}, wantReason: "duration"},
		{description: "unknown key", config: merge(rootsConfig(v2), map[string]any{"reserved-cpu": float64(1)}),
			wantKeys: []string{"reserved-cpu"}, wantReason: "unknown key"},
		{description: "every problem is reported at once", config: map[string]any{
			keyCPUOvercommit: float64(20), keyMemOvercommit: float64(0), "bogus": "x",
		}, wantKeys: []string{"bogus", keyCPUOvercommit, keyMemOvercommit}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			err := New(nil).Configure(context.Background(), sdk.ConfigureRequest{Config: tc.config})
			if tc.wantKeys == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var cerr *sdk.ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("error = %v, want *sdk.ConfigError", err)
			}
			var keys []string
			for _, p := range cerr.Problems {
				keys = append(keys, p.Key)
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Fatalf("problem keys %v, want %v (%v)", keys, tc.wantKeys, err)
			}
			if !strings.Contains(cerr.Problems[0].Reason, tc.wantReason) {
				t.Fatalf("reason %q, want one containing %q", cerr.Problems[0].Reason, tc.wantReason)
			}
		})
	}
}

func TestConfigureFailsOnUnreadableHost(t *testing.T) {
	root := writeTree(t, map[string]string{"sys/.keep": "", "proc/.keep": "", "cgroup/.keep": ""})
	err := New(nil).Configure(context.Background(), sdk.ConfigureRequest{Config: rootsConfig(root)})
	var cerr *sdk.ConfigError
	if err == nil || errors.As(err, &cerr) || !strings.Contains(err.Error(), "meminfo") {
		t.Fatalf("error = %v, want a host error about meminfo", err)
	}
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func TestListDevices(t *testing.T) {
	cases := []struct {
		description  string
		root         string
		extra        map[string]any
		wantCores    []string
		wantNUMA     map[string]int
		wantCoreCap  string
		wantMemBytes string
	}{
		{
			description: "v2 host: docker cpuset on two NUMA nodes, memory capped by the cgroup",
			root:        "v2host",
			wantCores:   []string{"2", "3", "4", "5", "6", "7", "10", "11", "12", "13"},
			wantNUMA:    map[string]int{"2": 0, "3": 0, "4": 1, "7": 1, "10": 0, "11": 0, "12": 1, "13": 1},
			wantCoreCap: "1", wantMemBytes: "8589934592",
		},
		{
			description: "v1 host with overcommit factors",
			root:        "v1host",
			extra:       map[string]any{keyCPUOvercommit: float64(3), keyMemOvercommit: 1.5},
			wantCores:   []string{"0", "1", "2", "3"},
			wantNUMA:    map[string]int{"0": 0, "1": 0, "2": 1, "3": 1},
			wantCoreCap: "3", wantMemBytes: "6291456000", // 4096000 KiB x 1.5
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			p := newFixturePlugin(t, fixture(t, tc.root), tc.extra)
			devs, err := p.ListDevices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var cores []string
			for _, d := range devs[:len(devs)-1] {
				cores = append(cores, d.ID)
				if d.SlotName != "cpu" || !d.Capacity.Equal(dec(tc.wantCoreCap)) || d.Health != sdk.HealthHealthy {
					t.Errorf("core %+v, want slot cpu with capacity %s", d, tc.wantCoreCap)
				}
				if want, ok := tc.wantNUMA[d.ID]; ok && d.NUMANode != want {
					t.Errorf("core %s on NUMA node %d, want %d", d.ID, d.NUMANode, want)
				}
			}
			if !slices.Equal(cores, tc.wantCores) {
				t.Fatalf("cores %v, want %v", cores, tc.wantCores)
			}
			mem := devs[len(devs)-1]
			if mem.ID != "root" || mem.SlotName != "mem" || mem.NUMANode != 0 || !mem.Capacity.Equal(dec(tc.wantMemBytes)) ||
				mem.MemoryBytes != mem.Capacity.BigInt().Uint64() {
				t.Fatalf("memory device %+v, want root/mem on node 0 with %s bytes", mem, tc.wantMemBytes)
			}
		})
	}
}

func TestPrepareContainer(t *testing.T) {
	cases := []struct {
		description string
		alloc       sdk.Allocation
		want        sdk.ContainerSpec
		wantErr     string
	}{
		{
			description: "cores sorted numerically, memory without swap",
			alloc: sdk.Allocation{
				"cpu": {"12": dec("1"), "2": dec("1"), "5": dec("2")},
				"mem": {"root": dec("4294967296")},
			},
			want: sdk.ContainerSpec{CpusetCpus: "2,5,12", MemoryBytes: 4294967296, MemorySwapBytes: 4294967296},
		},
		{
			description: "zero shares do not pin a core; fractional bytes are truncated",
			alloc:       sdk.Allocation{"cpu": {"3": dec("1"), "4": dec("0")}, "mem": {"root": dec("1024.9")}},
			want:        sdk.ContainerSpec{CpusetCpus: "3", MemoryBytes: 1024, MemorySwapBytes: 1024},
		},
		{description: "empty allocation", alloc: sdk.Allocation{}, want: sdk.ContainerSpec{}},
		{description: "a core outside the docker cpuset", alloc: sdk.Allocation{"cpu": {"0": dec("1")}},
			wantErr: `core "0", which is not a usable core (usable: 2,3,4,5,6,7,10,11,12,13)`},
		{description: "a core that is not a number", alloc: sdk.Allocation{"cpu": {"root": dec("1")}}, wantErr: `core "root"`},
		{description: "a negative share", alloc: sdk.Allocation{"cpu": {"2": dec("-1")}}, wantErr: "negative"},
		{description: "an unknown memory device", alloc: sdk.Allocation{"mem": {"node1": dec("1")}}, wantErr: `device "node1"`},
		{description: "a negative memory amount", alloc: sdk.Allocation{"mem": {"root": dec("-1")}}, wantErr: "negative"},
		{description: "memory beyond int64", alloc: sdk.Allocation{"mem": {"root": dec("1e30")}}, wantErr: "too large"},
		{description: "a slot of another plugin", alloc: sdk.Allocation{"cuda.device": {"0": dec("1")}}, wantErr: `slot "cuda.device" does not belong`},
	}
	p := newFixturePlugin(t, fixture(t, "v2host"), nil)
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			spec, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: tc.alloc, KernelID: "k1"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if spec.CpusetCpus != tc.want.CpusetCpus || spec.MemoryBytes != tc.want.MemoryBytes || spec.MemorySwapBytes != tc.want.MemorySwapBytes {
				t.Fatalf("spec %+v, want %+v", spec, tc.want)
			}
			if len(spec.AttachedDevices) != 0 || len(spec.ResourceData) != 0 || len(spec.Env) != 0 {
				t.Fatalf("spec carries attached devices, resource data or env: %+v", spec)
			}
		})
	}
}

func TestRestoreAllocation(t *testing.T) {
	cases := []struct {
		description string
		req         sdk.RestoreRequest
		want        sdk.Allocation
		wantErr     string
	}{
		{
			description: "shares from resource.txt win over container settings",
			req: sdk.RestoreRequest{
				ResourceData: map[string]string{"CPU_SHARES": "2:2,3:1", "MEM_SHARES": "root:4g", "CUDA.DEVICE_SHARES": "0:1"},
				CpusetCpus:   "7", MemoryBytes: 1,
			},
			want: sdk.Allocation{"cpu": {"2": dec("2"), "3": dec("1")}, "mem": {"root": dec("4294967296")}},
		},
		{
			description: "without shares lines, CpusetCpus and Memory",
			req:         sdk.RestoreRequest{ResourceData: map[string]string{"CID": "x"}, CpusetCpus: "2-3,10", MemoryBytes: 536870912},
			want:        sdk.Allocation{"cpu": {"2": dec("1"), "3": dec("1"), "10": dec("1")}, "mem": {"root": dec("536870912")}},
		},
		{
			description: "an empty shares line falls back too",
			req:         sdk.RestoreRequest{ResourceData: map[string]string{"CPU_SHARES": ""}, CpusetCpus: "4"},
			want:        sdk.Allocation{"cpu": {"4": dec("1")}},
		},
		{description: "nothing recorded", req: sdk.RestoreRequest{}, want: sdk.Allocation{}},
		{
			description: "a bad amount names the key",
			req:         sdk.RestoreRequest{ResourceData: map[string]string{"MEM_SHARES": "root:lots"}},
			wantErr:     `"MEM_SHARES"`,
		},
		{
			description: "a bad CpusetCpus",
			req:         sdk.RestoreRequest{CpusetCpus: "3-1"},
			wantErr:     "CpusetCpus",
		},
	}
	p := newFixturePlugin(t, fixture(t, "v2host"), nil)
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := p.RestoreAllocation(context.Background(), tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !allocationsEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPrepareRestoreRoundTrip writes what the agent writes (the shares
// lines) and the container settings Prepare chose, then restores from each
// record alone.
func TestPrepareRestoreRoundTrip(t *testing.T) {
	cases := []struct {
		description string
		alloc       sdk.Allocation
	}{
		{description: "one core and 4 GiB", alloc: sdk.Allocation{"cpu": {"2": dec("1")}, "mem": {"root": dec("4294967296")}}},
		{description: "cores across NUMA nodes and 512 MiB", alloc: sdk.Allocation{"cpu": {"3": dec("1"), "4": dec("1"), "13": dec("1")}, "mem": {"root": dec("536870912")}}},
		{description: "overcommitted shares", alloc: sdk.Allocation{"cpu": {"5": dec("3")}, "mem": {"root": dec("1073741824")}}},
	}
	p := newFixturePlugin(t, fixture(t, "v2host"), map[string]any{keyCPUOvercommit: float64(3)})
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			spec, err := p.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: tc.alloc})
			if err != nil {
				t.Fatal(err)
			}
			data := map[string]string{}
			for slot, amounts := range tc.alloc {
				k, v := sdk.FormatShares(slot, amounts, slot == "mem")
				data[k] = v
			}
			fromFile, err := p.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: data, CpusetCpus: spec.CpusetCpus, MemoryBytes: spec.MemoryBytes})
			if err != nil {
				t.Fatal(err)
			}
			if !allocationsEqual(fromFile, tc.alloc) {
				t.Fatalf("restored from resource.txt %v, want %v", fromFile, tc.alloc)
			}
			fromContainer, err := p.RestoreAllocation(ctx, sdk.RestoreRequest{CpusetCpus: spec.CpusetCpus, MemoryBytes: spec.MemoryBytes})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sortedIDs(fromContainer["cpu"]), sortedIDs(tc.alloc["cpu"])) ||
				!fromContainer["mem"]["root"].Equal(tc.alloc["mem"]["root"]) {
				t.Fatalf("restored from container settings %v, want the cores and memory of %v", fromContainer, tc.alloc)
			}
		})
	}
}

func sortedIDs(m map[string]decimal.Decimal) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func allocationsEqual(a, b sdk.Allocation) bool {
	if len(a) != len(b) {
		return false
	}
	for slot, am := range a {
		bm, ok := b[slot]
		if !ok || len(am) != len(bm) {
			return false
		}
		for dev, v := range am {
			if w, ok := bm[dev]; !ok || !v.Equal(w) {
				return false
			}
		}
	}
	return true
}

// copyTree copies a fixture so a test can change files in it.
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func metricByKey(t *testing.T, ms []sdk.Metric, key string) sdk.Metric {
	t.Helper()
	for _, m := range ms {
		if m.Key == key {
			return m
		}
	}
	t.Fatalf("no metric %q in %v", key, ms)
	return sdk.Metric{}
}

func TestNodeMetrics(t *testing.T) {
	root := copyTree(t, fixture(t, "v2host"))
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New(nil)
	p.now = func() time.Time { return clock }
	cfg := rootsConfig(root)
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	// Two seconds later, core 2 was busy 1.5 s (user +100 ticks, system +50)
	// and core 13 for 0.2 s; core 0 is outside Docker's cpuset.
	stat, err := os.ReadFile(filepath.Join(root, "proc", "stat"))
	if err != nil {
		t.Fatal(err)
	}
	updated := strings.Replace(string(stat), "cpu2 1000 5 500 ", "cpu2 1100 5 550 ", 1)
	updated = strings.Replace(updated, "cpu13 1000 5 500 ", "cpu13 1015 5 505 ", 1)
	updated = strings.Replace(updated, "cpu0 1000 5 500 ", "cpu0 9000 5 500 ", 1)
	if err := os.WriteFile(filepath.Join(root, "proc", "stat"), []byte(updated), 0o644); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)

	ms, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	util := metricByKey(t, ms, "cpu_util")
	if util.Type != sdk.MetricUtilization || util.UnitHint != "msec" {
		t.Errorf("cpu_util type %v unit %q", util.Type, util.UnitHint)
	}
	if !util.PerNode.Value.Equal(dec("1700")) || !util.PerNode.Capacity.Equal(dec("2000")) {
		t.Errorf("node cpu_util %s/%s, want 1700/2000", util.PerNode.Value, util.PerNode.Capacity)
	}
	if len(util.PerDevice) != 10 || !util.PerDevice["2"].Value.Equal(dec("1500")) || !util.PerDevice["13"].Value.Equal(dec("200")) ||
		!util.PerDevice["3"].Value.IsZero() {
		t.Errorf("per-core cpu_util %v, want 10 usable cores with 2=1500 and 13=200", util.PerDevice)
	}
	if _, ok := util.PerDevice["0"]; ok {
		t.Errorf("core 0 is not usable but was measured")
	}
	mem := metricByKey(t, ms, "mem")
	// MemTotal 16384000 kB - MemAvailable 12288000 kB.
	if !mem.PerNode.Value.Equal(dec("4194304000")) || !mem.PerNode.Capacity.Equal(dec("16777216000")) ||
		!mem.PerDevice["root"].Value.Equal(mem.PerNode.Value) {
		t.Errorf("mem %s/%s, want 4194304000/16777216000", mem.PerNode.Value, mem.PerNode.Capacity)
	}
}

func TestNodeMetricsFirstCallWithoutBaseline(t *testing.T) {
	root := copyTree(t, fixture(t, "v1host"))
	p := newFixturePlugin(t, root, nil)
	// As if Configure could not read /proc/stat: the first successful read
	// has nothing to compare with.
	p.sampleMu.Lock()
	p.lastSample = nil
	p.sampleMu.Unlock()
	ms, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Key == "cpu_util" {
			t.Fatalf("cpu_util reported without a baseline: %+v", m)
		}
	}
	metricByKey(t, ms, "mem")
	ms, err = p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	metricByKey(t, ms, "cpu_util")
}

func TestContainerMetrics(t *testing.T) {
	cases := []struct {
		description string
		root        string
		refs        []sdk.ContainerRef
		wantCPUMs   map[string]string
		wantMem     map[string][2]string // value, capacity
		wantIO      map[string][2]string // read, write
	}{
		{
			description: "cgroup v2 containers, one gone and one half broken",
			root:        "v2host",
			refs: []sdk.ContainerRef{
				{ContainerID: "4f1c9a", CgroupPath: "/system.slice/docker-4f1c9a.scope"},
				{ContainerID: "77aa01", CgroupPath: "/system.slice/docker-77aa01.scope"},
				{ContainerID: "bad000", CgroupPath: "/system.slice/docker-bad000.scope"},
				{ContainerID: "gone", CgroupPath: "/system.slice/docker-gone.scope"},
			},
			wantCPUMs: map[string]string{"4f1c9a": "2500", "77aa01": "1"},
			wantMem: map[string][2]string{
				"4f1c9a": {"939524096", "2147483648"},
				// Unlimited: capacity is MemTotal, as docker stats reports.
				"77aa01": {"4096", "16777216000"},
				"bad000": {"8192", "16777216000"},
			},
			wantIO: map[string][2]string{"4f1c9a": {"4846592", "314949632"}},
		},
		{
			description: "cgroup v1 container",
			root:        "v1host",
			refs:        []sdk.ContainerRef{{ContainerID: "9e8d7c", CgroupPath: "docker/9e8d7c"}},
			wantCPUMs:   map[string]string{"9e8d7c": "3500"},
			wantMem:     map[string][2]string{"9e8d7c": {"469762048", "1073741824"}},
			wantIO:      map[string][2]string{"9e8d7c": {"13918308", "4296"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			p := newFixturePlugin(t, fixture(t, tc.root), nil)
			ms, err := p.ContainerMetrics(context.Background(), tc.refs)
			if err != nil {
				t.Fatal(err)
			}
			used, util := metricByKey(t, ms, "cpu_used"), metricByKey(t, ms, "cpu_util")
			if len(used.PerContainer) != len(tc.wantCPUMs) {
				t.Errorf("cpu_used for %v, want %v", used.PerContainer, tc.wantCPUMs)
			}
			for id, want := range tc.wantCPUMs {
				if !used.PerContainer[id].Value.Equal(dec(want)) || !util.PerContainer[id].Value.Equal(dec(want)) ||
					!util.PerContainer[id].Capacity.Equal(dec("1000")) {
					t.Errorf("container %s cpu_used %v cpu_util %v, want %s ms with util capacity 1000", id, used.PerContainer[id], util.PerContainer[id], want)
				}
			}
			mem := metricByKey(t, ms, "mem")
			if len(mem.PerContainer) != len(tc.wantMem) {
				t.Errorf("mem for %v, want %v", mem.PerContainer, tc.wantMem)
			}
			for id, want := range tc.wantMem {
				got := mem.PerContainer[id]
				if !got.Value.Equal(dec(want[0])) || got.Capacity == nil || !got.Capacity.Equal(dec(want[1])) {
					t.Errorf("container %s mem %v, want %s of %s", id, got, want[0], want[1])
				}
			}
			r, w := metricByKey(t, ms, "io_read"), metricByKey(t, ms, "io_write")
			if len(r.PerContainer) != len(tc.wantIO) {
				t.Errorf("io_read for %v, want %v", r.PerContainer, tc.wantIO)
			}
			for id, want := range tc.wantIO {
				if !r.PerContainer[id].Value.Equal(dec(want[0])) || !w.PerContainer[id].Value.Equal(dec(want[1])) {
					t.Errorf("container %s io %v/%v, want %s/%s", id, r.PerContainer[id], w.PerContainer[id], want[0], want[1])
				}
			}
		})
	}
}

func TestWatchDevices(t *testing.T) {
	root := copyTree(t, fixture(t, "v2host"))
	p := newFixturePlugin(t, root, map[string]any{keyWatchInterval: "100ms"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, err := p.WatchDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	receive := func() []sdk.Device {
		t.Helper()
		select {
		case devs, ok := <-updates:
			if !ok {
				t.Fatal("channel closed early")
			}
			return devs
		case <-time.After(5 * time.Second):
			t.Fatal("no update within 5s")
		}
		return nil
	}
	if first := receive(); len(first) != 11 {
		t.Fatalf("first list has %d devices, want 10 cores + memory", len(first))
	}
	// Docker's cpuset shrinks: the watcher must notice.
	cpuset := filepath.Join(root, "cgroup", "system.slice", "cpuset.cpus.effective")
	if err := os.WriteFile(cpuset, []byte("2-3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if second := receive(); len(second) != 3 {
		t.Fatalf("after the cpuset change: %d devices, want 2 cores + memory", len(second))
	}
	// A NUMA move with the same set of cores is a change too.
	if err := os.WriteFile(filepath.Join(root, "sys", "devices", "system", "node", "node1", "cpulist"), []byte("2-7,12-15\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys", "devices", "system", "node", "node0", "cpulist"), []byte("0-1,8-11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := receive()
	if third[0].ID != "2" || third[0].NUMANode != 1 {
		t.Fatalf("after the NUMA change: %+v, want core 2 on node 1", third[0])
	}
	// Nothing changes: nothing is sent.
	select {
	case devs := <-updates:
		t.Fatalf("unchanged host sent %v", devs)
	case <-time.After(350 * time.Millisecond):
	}
	cancel()
	select {
	case _, ok := <-updates:
		if ok {
			t.Fatal("value after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestHardwareInfo(t *testing.T) {
	cases := []struct {
		description string
		root        func(t *testing.T) string
		wantStatus  sdk.Health
		wantMeta    map[string]string
	}{
		{
			description: "v2 host",
			root:        func(t *testing.T) string { return fixture(t, "v2host") },
			wantStatus:  sdk.HealthHealthy,
			wantMeta:    map[string]string{"cores": "10", "numa_nodes": "2", "memory_usable_bytes": "8589934592", "cgroup_version": "2"},
		},
		{
			description: "v1 host",
			root:        func(t *testing.T) string { return fixture(t, "v1host") },
			wantStatus:  sdk.HealthHealthy,
			wantMeta:    map[string]string{"cores": "4", "numa_nodes": "2", "core_list": "0,1,2,3", "cgroup_version": "1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			hw, err := newFixturePlugin(t, tc.root(t), nil).HardwareInfo(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if hw.Status != tc.wantStatus {
				t.Fatalf("status %v (%s), want %v", hw.Status, hw.StatusInfo, tc.wantStatus)
			}
			for k, v := range tc.wantMeta {
				if hw.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, hw.Metadata[k], v)
				}
			}
		})
	}
}

func TestHardwareInfoUnhealthyWhenHostUnreadable(t *testing.T) {
	root := copyTree(t, fixture(t, "v1host"))
	p := newFixturePlugin(t, root, nil)
	if err := os.Remove(filepath.Join(root, "proc", "meminfo")); err != nil {
		t.Fatal(err)
	}
	hw, err := p.HardwareInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if hw.Status != sdk.HealthUnhealthy || !strings.Contains(hw.StatusInfo, "meminfo") {
		t.Fatalf("got %v %q, want unhealthy naming meminfo", hw.Status, hw.StatusInfo)
	}
}
