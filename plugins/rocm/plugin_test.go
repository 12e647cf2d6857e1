package rocm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

// wantDevice is what discovery must find for one device.
type wantDevice struct {
	pci         string
	numa        int
	render      string
	card        string
	partition   string // "" for a whole GPU
	model       string
	memory      uint64
	computeUnit uint32
}

const (
	mi300xMem = 205822885888
	w7900Mem  = 51522830336
)

func mi300xDevices() map[string]wantDevice {
	full := func(pci string, numa int, render, card string) wantDevice {
		return wantDevice{pci, numa, render, card, "", "AMD Instinct MI300X OAM", mi300xMem, 304}
	}
	half := func(pci, render, card, part string) wantDevice {
		return wantDevice{pci, 1, render, card, part, "AMD Instinct MI300X OAM", mi300xMem / 2, 152}
	}
	return map[string]wantDevice{
		"0": full("0000:05:00.0", 0, "128", "1"),
		"1": full("0000:26:00.0", 0, "129", "2"),
		"2": full("0000:46:00.0", 0, "130", "3"),
		"3": full("0000:65:00.0", 0, "131", "4"),
		"4": full("0000:85:00.0", 1, "132", "5"),
		"5": full("0000:a6:00.0", 1, "133", "6"),
		// DPX: the first partition on the PCI device's nodes, the second
		// on an amdgpu_xcp platform device's.
		"6": half("0000:c6:00.0", "134", "7", "0"),
		"7": half("0000:c6:00.0", "136", "9", "1"),
		"8": half("0000:e5:00.0", "135", "8", "0"),
		"9": half("0000:e5:00.0", "137", "10", "1"),
	}
}

func TestDiscovery(t *testing.T) {
	tests := []struct {
		description string
		archive     string
		extra       map[string]any
		want        map[string]wantDevice
	}{
		{
			description: "MI300X node: 8 GPUs on 2 NUMA nodes, 2 in DPX mode, 10 devices",
			archive:     fixtureMI300X,
			want:        mi300xDevices(),
		},
		{
			description: "workstation: 2 x W7900 without NUMA information, model from the id table",
			archive:     fixtureW7900,
			want: map[string]wantDevice{
				"0": {"0000:03:00.0", sdk.UnknownNUMANode, "128", "0", "", "AMD Radeon PRO W7900", w7900Mem, 96},
				"1": {"0000:43:00.0", sdk.UnknownNUMANode, "129", "1", "", "AMD Radeon PRO W7900", w7900Mem, 96},
			},
		},
		{
			description: "device mask by index, PCI address and gpu_id keeps the other IDs",
			archive:     fixtureMI300X,
			// "0000:c6:00.0" hides both partitions of GPU 6; 40000 is GPU 0's gpu_id.
			extra: map[string]any{keyDeviceMask: "3, 0000:c6:00.0, 40000"},
			want: func() map[string]wantDevice {
				m := mi300xDevices()
				for _, id := range []string{"0", "3", "6", "7"} {
					delete(m, id)
				}
				return m
			}(),
		},
		{
			description: "device mask by unique ID hides every partition of that GPU",
			archive:     fixtureMI300X,
			extra:       map[string]any{keyDeviceMask: []any{"0x2d7c9a1e5b3fb777"}},
			want: func() map[string]wantDevice {
				m := mi300xDevices()
				delete(m, "8")
				delete(m, "9")
				return m
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			p := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, tc.archive, tc.extra))
			devs, err := p.ListDevices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != len(tc.want) {
				t.Fatalf("got %d devices, want %d: %+v", len(devs), len(tc.want), devs)
			}
			for _, d := range devs {
				w, ok := tc.want[d.ID]
				if !ok {
					t.Fatalf("unexpected device %q", d.ID)
				}
				got := wantDevice{d.PCIBusID, d.NUMANode, d.Attributes["drm_render_minor"], d.Attributes["drm_card_minor"],
					d.Attributes["partition"], d.Model, d.MemoryBytes, d.ProcessingUnits}
				if got != w {
					t.Errorf("device %s:\n got %+v\nwant %+v", d.ID, got, w)
				}
				if d.Health != sdk.HealthHealthy || d.SlotName != slotDevice || !d.Capacity.Equal(decimal.NewFromInt(1)) {
					t.Errorf("device %s: %+v", d.ID, d)
				}
			}
			desc, err := p.Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := desc.Validate(); err != nil {
				t.Fatal(err)
			}
			hw, _ := p.HardwareInfo(context.Background())
			if hw.Status != sdk.HealthHealthy {
				t.Fatalf("hardware info %+v", hw)
			}
		})
	}
}

func TestNoDriver(t *testing.T) {
	p := plugintest.Configured(t, New(), map[string]any{keySysfsRoot: t.TempDir(), keyDevRoot: t.TempDir()})
	devs, _ := p.ListDevices(context.Background())
	hw, _ := p.HardwareInfo(context.Background())
	if len(devs) != 0 || hw.Status != sdk.HealthUnknown || !strings.Contains(hw.StatusInfo, "amdgpu driver is not loaded") {
		t.Fatalf("devices %v hardware %+v", devs, hw)
	}
	spec, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{})
	if err != nil || len(spec.Devices) != 0 {
		t.Fatalf("empty allocation: %+v %v", spec, err)
	}
}

func TestDescribeBeforeConfigure(t *testing.T) {
	desc, err := New().Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := desc.Validate(); err != nil {
		t.Fatal(err)
	}
	k := desc.Kinds[0]
	if k.Key != "rocm" || k.SlotTypes[0].Name != "rocm.device" || k.SlotTypes[0].Kind != sdk.SlotCount ||
		k.AllocMap.Kind != sdk.AllocDiscrete || k.AllocMap.Strategy != sdk.StrategyEvenly {
		t.Fatalf("kind %+v", k)
	}
}

func TestPrepareContainer(t *testing.T) {
	cfg := plugintest.SysfsFixtureConfig(t, fixtureMI300X, nil)
	devRoot := cfg[keyDevRoot].(string)
	p := plugintest.Configured(t, New(), cfg)
	one := decimal.NewFromInt(1)
	node := func(name string) sdk.DeviceNode {
		host := filepath.Join(devRoot, name)
		return sdk.DeviceNode{HostPath: host, ContainerPath: "/dev/" + name, CgroupPermissions: "rwm"}
	}
	tests := []struct {
		description string
		alloc       sdk.Allocation
		wantDevices []sdk.DeviceNode
		wantVisible string
		wantGlobal  string
		wantErr     string
	}{
		{
			description: "one GPU: /dev/kfd plus its render and card node",
			alloc:       sdk.Allocation{slotDevice: {"2": one}},
			wantDevices: []sdk.DeviceNode{node("kfd"), node("dri/renderD130"), node("dri/card3")},
			wantVisible: "0",
			wantGlobal:  "0:2",
		},
		{
			description: "two GPUs numbered 0,1 in the container, in host order",
			alloc:       sdk.Allocation{slotDevice: {"5": one, "1": one}},
			wantDevices: []sdk.DeviceNode{node("kfd"), node("dri/renderD129"), node("dri/card2"), node("dri/renderD133"), node("dri/card6")},
			wantVisible: "0,1",
			wantGlobal:  "0:1,1:5",
		},
		{
			description: "a DPX partition gets its amdgpu_xcp nodes",
			alloc:       sdk.Allocation{slotDevice: {"7": one}},
			wantDevices: []sdk.DeviceNode{node("kfd"), node("dri/renderD136"), node("dri/card9")},
			wantVisible: "0",
			wantGlobal:  "0:7",
		},
		{
			description: "zero amounts are not allocations",
			alloc:       sdk.Allocation{slotDevice: {"0": decimal.Zero}},
		},
		{
			description: "unknown device",
			alloc:       sdk.Allocation{slotDevice: {"42": one}},
			wantErr:     `device "42" is not a known ROCm device`,
		},
		{
			description: "foreign slot",
			alloc:       sdk.Allocation{"cuda.device": {"0": one}},
			wantErr:     `slot "cuda.device" does not belong`,
		},
		{
			description: "more than a whole device",
			alloc:       sdk.Allocation{slotDevice: {"0": decimal.NewFromInt(2)}},
			wantErr:     "outside 0..1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			spec, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: tc.alloc})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(spec.Devices, tc.wantDevices) {
				t.Fatalf("devices\n got %+v\nwant %+v", spec.Devices, tc.wantDevices)
			}
			if tc.wantVisible == "" {
				if len(spec.Env) != 0 || len(spec.ResourceData) != 0 || len(spec.GroupAdd) != 0 {
					t.Fatalf("empty allocation gave %+v", spec)
				}
				return
			}
			if spec.Env["HIP_VISIBLE_DEVICES"] != tc.wantVisible || spec.Env["ROCR_VISIBLE_DEVICES"] != tc.wantVisible {
				t.Errorf("env %v", spec.Env)
			}
			if spec.ResourceData["ROCM_GLOBAL_DEVICE_IDS"] != tc.wantGlobal {
				t.Errorf("resource data %v", spec.ResourceData)
			}
			if !slices.Equal(spec.GroupAdd, []string{"video", "render"}) {
				t.Errorf("groups %v", spec.GroupAdd)
			}
			for _, a := range spec.AttachedDevices {
				if a.ModelName != "AMD Instinct MI300X OAM" || a.Data["mem"] == "" || a.Data["smp"] == "" {
					t.Errorf("attached %+v", a)
				}
			}
		})
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	p := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, fixtureMI300X, nil))
	one := decimal.NewFromInt(1)
	tests := []struct {
		description string
		alloc       sdk.Allocation
	}{
		{"one device", sdk.Allocation{slotDevice: {"0": one}}},
		{"partitions and whole GPUs", sdk.Allocation{slotDevice: {"3": one, "7": one, "9": one}}},
		{"a device that is gone since is kept", sdk.Allocation{slotDevice: {"12": one}}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			key, value := sdk.FormatShares(slotDevice, tc.alloc[slotDevice], false)
			if key != "ROCM.DEVICE_SHARES" {
				t.Fatalf("key %q", key)
			}
			data := map[string]string{key: value, "CPU_SHARES": "0:1", "CUDA.DEVICE_SHARES": "0:1", "ROCM_GLOBAL_DEVICE_IDS": "0:0"}
			got, err := p.RestoreAllocation(context.Background(), sdk.RestoreRequest{ResourceData: data})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[slotDevice]) != len(tc.alloc[slotDevice]) {
				t.Fatalf("restored %v, want %v", got, tc.alloc)
			}
			for id, amount := range tc.alloc[slotDevice] {
				if !got[slotDevice][id].Equal(amount) {
					t.Fatalf("restored %v, want %v", got, tc.alloc)
				}
			}
		})
	}
	if got, err := p.RestoreAllocation(context.Background(), sdk.RestoreRequest{ResourceData: map[string]string{"ROCM.DEVICE_SHARES": "0:-1"}}); err == nil {
		t.Fatalf("negative amount restored as %v", got)
	}
}

func TestConfigureErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		description string
		config      map[string]any
		wantKeys    []string
	}{
		{"unknown key", map[string]any{"sysfs_root": "/sys"}, []string{"sysfs_root"}},
		{"sysfs root missing", map[string]any{keySysfsRoot: "/nonexistent/sys"}, []string{keySysfsRoot}},
		{"dev root is a file", map[string]any{keyDevRoot: file}, []string{keyDevRoot}},
		{"device mask of numbers", map[string]any{keyDeviceMask: []any{1.0}}, []string{keyDeviceMask}},
		{"watch interval too short", map[string]any{keyWatchInterval: "1ms"}, []string{keyWatchInterval}},
		{"watch interval not a duration", map[string]any{keyWatchInterval: "soon"}, []string{keyWatchInterval}},
		{"check-device-nodes not a boolean", map[string]any{keyCheckDeviceNodes: "maybe"}, []string{keyCheckDeviceNodes}},
		{"every bad key is reported, sorted", map[string]any{keyWatchInterval: -1.0, "bogus": 1.0, keySysfsRoot: 7.0},
			[]string{"bogus", keySysfsRoot, keyWatchInterval}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			err := New().Configure(context.Background(), sdk.ConfigureRequest{Config: tc.config})
			var cerr *sdk.ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("error %v is not a *sdk.ConfigError", err)
			}
			var keys []string
			for _, prob := range cerr.Problems {
				keys = append(keys, prob.Key)
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Fatalf("problem keys %v, want %v (%v)", keys, tc.wantKeys, err)
			}
		})
	}
	good := map[string]any{keyWatchInterval: 2.5, keyCheckDeviceNodes: "false", keyDeviceMask: "0,1"}
	cfg, err := parseConfig(good)
	if err != nil || cfg.WatchInterval.Seconds() != 2.5 || cfg.CheckDeviceNodes || len(cfg.DeviceMask) != 2 {
		t.Fatalf("config %+v err %v", cfg, err)
	}
}

func TestHotPlug(t *testing.T) {
	cfg := plugintest.SysfsFixtureConfig(t, fixtureMI300X, map[string]any{keyWatchInterval: "20ms"})
	sys, dev := cfg[keySysfsRoot].(string), cfg[keyDevRoot].(string)
	p := plugintest.Configured(t, New(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, err := p.WatchDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-updates; len(first) != 10 {
		t.Fatalf("first list has %d devices", len(first))
	}
	node11 := filepath.Join(sys, kfdNodesDir, "11")
	saved := filepath.Join(t.TempDir(), "node11")

	steps := []struct {
		description string
		change      func() error
		match       func(map[string]sdk.Device) bool
	}{
		{
			description: "GPU 7's second partition goes away (KFD node removed)",
			change:      func() error { return os.Rename(node11, saved) },
			match:       func(m map[string]sdk.Device) bool { _, ok := m["9"]; return len(m) == 9 && !ok },
		},
		{
			description: "it comes back",
			change:      func() error { return os.Rename(saved, node11) },
			match:       func(m map[string]sdk.Device) bool { return len(m) == 10 },
		},
		{
			description: "GPU 2's render node vanishes from /dev: unhealthy",
			change:      func() error { return os.Remove(filepath.Join(dev, "dri", "renderD130")) },
			match: func(m map[string]sdk.Device) bool {
				return m["2"].Health == sdk.HealthUnhealthy && strings.Contains(m["2"].HealthDescription, "renderD130") &&
					m["1"].Health == sdk.HealthHealthy
			},
		},
		{
			description: "it is re-created: healthy again",
			change:      func() error { return os.WriteFile(filepath.Join(dev, "dri", "renderD130"), nil, 0o644) },
			match:       func(m map[string]sdk.Device) bool { return len(m) == 10 && m["2"].Health == sdk.HealthHealthy },
		},
	}
	for _, step := range steps {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.description, err)
		}
		waitForDevices(t, updates, step.description, step.match)
	}
	hw, _ := p.HardwareInfo(context.Background())
	if hw.Status != sdk.HealthHealthy {
		t.Fatalf("hardware info after recovery %+v", hw)
	}
}

func TestDeviceNodeCheck(t *testing.T) {
	tests := []struct {
		description string
		check       bool
		want        sdk.Health
	}{
		{"checked: /dev/kfd missing makes every device unhealthy", true, sdk.HealthUnhealthy},
		{"check disabled: healthy", false, sdk.HealthHealthy},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			cfg := plugintest.SysfsFixtureConfig(t, fixtureW7900, map[string]any{keyCheckDeviceNodes: tc.check})
			if err := os.Remove(filepath.Join(cfg[keyDevRoot].(string), "kfd")); err != nil {
				t.Fatal(err)
			}
			p := plugintest.Configured(t, New(), cfg)
			devs, _ := p.ListDevices(context.Background())
			for _, d := range devs {
				if d.Health != tc.want {
					t.Fatalf("device %s health %s (%s)", d.ID, d.Health, d.HealthDescription)
				}
			}
			hw, _ := p.HardwareInfo(context.Background())
			if tc.check && hw.Status != sdk.HealthDegraded {
				t.Fatalf("hardware info %+v", hw)
			}
		})
	}
}

func TestNodeMetrics(t *testing.T) {
	p := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, fixtureMI300X, nil))
	metrics, err := p.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]sdk.Metric{}
	for _, m := range metrics {
		byKey[m.Key] = m
	}
	vram := decimal.NewFromInt(mi300xMem + 335544320)
	tests := []struct {
		description string
		key, device string
		value       string
		capacity    string
	}{
		{"busy percent", "rocm_util", "2", "100", "100"},
		{"VRAM used of total", "rocm_mem", "1", "43285217280", vram.String()},
		{"temperature from millidegrees", "rocm_temp", "2", "74", ""},
		{"power from power1_input microwatts with the cap", "rocm_power", "2", "739", "750"},
		{"a partition reports its GPU", "rocm_util", "9", "88", "100"},
		{"node utilisation counts each GPU once", "rocm_util", "", "306", "800"},
		{"node power", "rocm_power", "", "2935", "6000"},
		{"node temperature is the mean", "rocm_temp", "", "51.9", ""},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			m, ok := byKey[tc.key]
			if !ok {
				t.Fatalf("no %s in %v", tc.key, metrics)
			}
			meas := m.PerNode
			if tc.device != "" {
				d, ok := m.PerDevice[tc.device]
				if !ok {
					t.Fatalf("no device %s", tc.device)
				}
				meas = &d
			}
			if !meas.Value.Equal(decimal.RequireFromString(tc.value)) {
				t.Errorf("value %s, want %s", meas.Value, tc.value)
			}
			if tc.capacity == "" {
				if meas.Capacity != nil {
					t.Errorf("capacity %s, want none", meas.Capacity)
				}
			} else if meas.Capacity == nil || !meas.Capacity.Equal(decimal.RequireFromString(tc.capacity)) {
				t.Errorf("capacity %v, want %s", meas.Capacity, tc.capacity)
			}
		})
	}
	if len(byKey["rocm_util"].PerDevice) != 10 {
		t.Fatalf("per-device util %v", byKey["rocm_util"].PerDevice)
	}
	// The workstation reports power1_average.
	w := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, fixtureW7900, nil))
	wm, _ := w.NodeMetrics(context.Background())
	for _, m := range wm {
		if m.Key == "rocm_power" && !m.PerDevice["1"].Value.Equal(decimal.NewFromInt(241)) {
			t.Fatalf("W7900 power %v", m.PerDevice)
		}
	}
	if len(wm) != 4 {
		t.Fatalf("W7900 metrics %v", wm)
	}
}
