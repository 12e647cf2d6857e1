package tpu

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

type wantChip struct {
	pci   string
	numa  int
	model string
	node  string // device node relative to dev-root
}

func v4Chips() map[string]wantChip {
	return map[string]wantChip{
		"0": {"0000:00:04.0", 0, "TPU v4", "accel0"},
		"1": {"0000:00:05.0", 0, "TPU v4", "accel1"},
		"2": {"0000:00:06.0", 1, "TPU v4", "accel2"},
		"3": {"0000:00:07.0", 1, "TPU v4", "accel3"},
	}
}

func TestDiscovery(t *testing.T) {
	v5e := map[string]wantChip{}
	for i := range 8 {
		numa := 0
		if i >= 4 {
			numa = 1
		}
		v5e[itoa(i)] = wantChip{"0000:00:" + hex2(5+i) + ".0", numa, "TPU v5e", "vfio/" + itoa(i)}
	}
	tests := []struct {
		description string
		archive     string
		extra       map[string]any
		edit        func(sys string) error
		want        map[string]wantChip
	}{
		{description: "v4 host: 4 accel chips on 2 NUMA nodes, gVNIC skipped", archive: fixtureV4, want: v4Chips()},
		{description: "v5e host: 8 vfio chips on 2 NUMA nodes", archive: fixtureV5e, want: v5e},
		{
			description: "an unknown Google accelerator id is listed with its raw id",
			archive:     fixtureV4,
			edit: func(sys string) error {
				return os.WriteFile(filepath.Join(sys, pciDevices, "0000:00:07.0", "device"), []byte("0x00ff\n"), 0o644)
			},
			want: func() map[string]wantChip {
				m := v4Chips()
				m["3"] = wantChip{"0000:00:07.0", 1, "TPU (unknown PCI device 0x00ff)", "accel3"}
				return m
			}(),
		},
		{
			description: "v2 and v3 share a device id and differ by subsystem id",
			archive:     fixtureV4,
			edit: func(sys string) error {
				dev := filepath.Join(sys, pciDevices, "0000:00:04.0")
				if err := os.WriteFile(filepath.Join(dev, "device"), []byte("0x0027\n"), 0o644); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dev, "subsystem_device"), []byte("0x004f\n"), 0o644)
			},
			want: func() map[string]wantChip {
				m := v4Chips()
				m["0"] = wantChip{"0000:00:04.0", 0, "TPU v3", "accel0"}
				return m
			}(),
		},
		{
			description: "device mask by ID and PCI address keeps the other IDs",
			archive:     fixtureV5e,
			extra:       map[string]any{keyDeviceMask: []any{"0", "0000:00:0c.0"}},
			want: func() map[string]wantChip {
				m := map[string]wantChip{}
				for k, v := range v5e {
					m[k] = v
				}
				delete(m, "0")
				delete(m, "7")
				return m
			}(),
		},
		{description: "no PCI devices at all", archive: "", want: map[string]wantChip{}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			var cfg map[string]any
			if tc.archive == "" {
				cfg = map[string]any{keySysfsRoot: t.TempDir(), keyDevRoot: t.TempDir()}
			} else {
				cfg = plugintest.SysfsFixtureConfig(t, tc.archive, tc.extra)
			}
			if tc.edit != nil {
				if err := tc.edit(cfg[keySysfsRoot].(string)); err != nil {
					t.Fatal(err)
				}
			}
			p := plugintest.Configured(t, New(), cfg)
			devs, _ := p.ListDevices(context.Background())
			if len(devs) != len(tc.want) {
				t.Fatalf("got %d chips, want %d: %+v", len(devs), len(tc.want), devs)
			}
			devRoot := cfg[keyDevRoot].(string)
			for _, d := range devs {
				w, ok := tc.want[d.ID]
				if !ok {
					t.Fatalf("unexpected chip %q", d.ID)
				}
				got := wantChip{d.PCIBusID, d.NUMANode, d.Model, strings.TrimPrefix(d.Attributes["device_node"], devRoot+"/")}
				if got != w {
					t.Errorf("chip %s:\n got %+v\nwant %+v", d.ID, got, w)
				}
				if d.Health != sdk.HealthHealthy || d.SlotName != slotDevice {
					t.Errorf("chip %s: %+v", d.ID, d)
				}
			}
			desc, _ := p.Describe(context.Background())
			if err := desc.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPrepareContainer(t *testing.T) {
	one := decimal.NewFromInt(1)
	tests := []struct {
		description string
		archive     string
		alloc       sdk.Allocation
		// wantDevices are host:container pairs, host relative to dev-root.
		wantDevices []string
		wantEnv     map[string]string
		wantGlobal  string
		wantErr     string
	}{
		{
			description: "one v4 chip is /dev/accel0 in the container",
			archive:     fixtureV4,
			alloc:       sdk.Allocation{slotDevice: {"2": one}},
			wantDevices: []string{"accel2:/dev/accel0"},
			wantEnv:     map[string]string{"TPU_VISIBLE_CHIPS": "0", "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1"},
			wantGlobal:  "0:2",
		},
		{
			description: "two v4 chips: bounds 1,2,1",
			archive:     fixtureV4,
			alloc:       sdk.Allocation{slotDevice: {"3": one, "1": one}},
			wantDevices: []string{"accel1:/dev/accel0", "accel3:/dev/accel1"},
			wantEnv:     map[string]string{"TPU_VISIBLE_CHIPS": "0,1", "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,2,1", "TPU_PROCESS_BOUNDS": "1,1,1"},
			wantGlobal:  "0:1,1:3",
		},
		{
			description: "all four v4 chips: bounds 2,2,1",
			archive:     fixtureV4,
			alloc:       sdk.Allocation{slotDevice: {"0": one, "1": one, "2": one, "3": one}},
			wantDevices: []string{"accel0:/dev/accel0", "accel1:/dev/accel1", "accel2:/dev/accel2", "accel3:/dev/accel3"},
			wantEnv:     map[string]string{"TPU_VISIBLE_CHIPS": "0,1,2,3", "TPU_CHIPS_PER_PROCESS_BOUNDS": "2,2,1", "TPU_PROCESS_BOUNDS": "1,1,1"},
			wantGlobal:  "0:0,1:1,2:2,3:3",
		},
		{
			description: "three chips: no bounds table entry, libtpu decides",
			archive:     fixtureV4,
			alloc:       sdk.Allocation{slotDevice: {"0": one, "1": one, "2": one}},
			wantDevices: []string{"accel0:/dev/accel0", "accel1:/dev/accel1", "accel2:/dev/accel2"},
			wantEnv:     map[string]string{"TPU_VISIBLE_CHIPS": "0,1,2"},
			wantGlobal:  "0:0,1:1,2:2",
		},
		{
			description: "v5e vfio chips keep their group nodes, plus /dev/vfio/vfio",
			archive:     fixtureV5e,
			alloc:       sdk.Allocation{slotDevice: {"5": one}},
			wantDevices: []string{"vfio/5:/dev/vfio/5", "vfio/vfio:/dev/vfio/vfio"},
			wantEnv:     map[string]string{"TPU_VISIBLE_CHIPS": "0", "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1"},
			wantGlobal:  "0:5",
		},
		{
			description: "all eight v5e chips: bounds 2,4,1",
			archive:     fixtureV5e,
			alloc:       sdk.Allocation{slotDevice: {"0": one, "1": one, "2": one, "3": one, "4": one, "5": one, "6": one, "7": one}},
			wantDevices: []string{"vfio/0:/dev/vfio/0", "vfio/1:/dev/vfio/1", "vfio/2:/dev/vfio/2", "vfio/3:/dev/vfio/3",
				"vfio/4:/dev/vfio/4", "vfio/5:/dev/vfio/5", "vfio/6:/dev/vfio/6", "vfio/7:/dev/vfio/7", "vfio/vfio:/dev/vfio/vfio"},
			wantEnv:    map[string]string{"TPU_VISIBLE_CHIPS": "0,1,2,3,4,5,6,7", "TPU_CHIPS_PER_PROCESS_BOUNDS": "2,4,1", "TPU_PROCESS_BOUNDS": "1,1,1"},
			wantGlobal: "0:0,1:1,2:2,3:3,4:4,5:5,6:6,7:7",
		},
		{description: "empty allocation", archive: fixtureV4, alloc: sdk.Allocation{}},
		{description: "unknown chip", archive: fixtureV4, alloc: sdk.Allocation{slotDevice: {"4": one}}, wantErr: `chip "4" is not a known TPU chip`},
		{description: "foreign slot", archive: fixtureV4, alloc: sdk.Allocation{"rocm.device": {"0": one}}, wantErr: "does not belong to the tpu plugin"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			cfg := plugintest.SysfsFixtureConfig(t, tc.archive, nil)
			devRoot := cfg[keyDevRoot].(string)
			p := plugintest.Configured(t, New(), cfg)
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
			var got []string
			for _, d := range spec.Devices {
				if d.CgroupPermissions != "rwm" {
					t.Errorf("permissions %q", d.CgroupPermissions)
				}
				got = append(got, strings.TrimPrefix(d.HostPath, devRoot+"/")+":"+d.ContainerPath)
			}
			if !slices.Equal(got, tc.wantDevices) {
				t.Fatalf("devices\n got %v\nwant %v", got, tc.wantDevices)
			}
			if len(spec.Env) != len(tc.wantEnv) {
				t.Fatalf("env %v, want %v", spec.Env, tc.wantEnv)
			}
			for k, v := range tc.wantEnv {
				if spec.Env[k] != v {
					t.Fatalf("env %v, want %v", spec.Env, tc.wantEnv)
				}
			}
			if spec.ResourceData["TPU_GLOBAL_DEVICE_IDS"] != tc.wantGlobal {
				t.Fatalf("resource data %v", spec.ResourceData)
			}
			if len(spec.AttachedDevices) != len(tc.alloc[slotDevice]) {
				t.Fatalf("attached %v", spec.AttachedDevices)
			}
		})
	}
}

func TestChipBoundsTable(t *testing.T) {
	tests := []struct {
		description string
		chips       int
		want        string
	}{
		{"one chip", 1, "1,1,1"},
		{"two chips", 2, "1,2,1"},
		{"four chips", 4, "2,2,1"},
		{"eight chips", 8, "2,4,1"},
		{"three chips: none", 3, ""},
		{"sixteen chips span hosts: none", 16, ""},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, _ := chipBounds(tc.chips)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	p := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, fixtureV4, nil))
	one := decimal.NewFromInt(1)
	tests := []struct {
		description string
		alloc       map[string]decimal.Decimal
	}{
		{"one chip", map[string]decimal.Decimal{"0": one}},
		{"all chips", map[string]decimal.Decimal{"0": one, "1": one, "2": one, "3": one}},
		{"a chip that is gone since is kept", map[string]decimal.Decimal{"9": one}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			key, value := sdk.FormatShares(slotDevice, tc.alloc, false)
			if key != "TPU.DEVICE_SHARES" {
				t.Fatalf("key %q", key)
			}
			got, err := p.RestoreAllocation(context.Background(), sdk.RestoreRequest{ResourceData: map[string]string{
				key: value, "CPU_SHARES": "0:1", "ROCM.DEVICE_SHARES": "0:1", "TPU_GLOBAL_DEVICE_IDS": "0:0",
			}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[slotDevice]) != len(tc.alloc) {
				t.Fatalf("restored %v", got)
			}
			for id, amount := range tc.alloc {
				if !got[slotDevice][id].Equal(amount) {
					t.Fatalf("restored %v", got)
				}
			}
		})
	}
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		description string
		config      map[string]any
		wantKeys    []string
	}{
		{"unknown key", map[string]any{"visible-chips": "0"}, []string{"visible-chips"}},
		{"sysfs root missing", map[string]any{keySysfsRoot: "/nonexistent/sys"}, []string{keySysfsRoot}},
		{"dev root not a string", map[string]any{keyDevRoot: true}, []string{keyDevRoot}},
		{"device mask not a list", map[string]any{keyDeviceMask: 3.0}, []string{keyDeviceMask}},
		{"watch interval too long", map[string]any{keyWatchInterval: "48h"}, []string{keyWatchInterval}},
		{"check-device-nodes not a boolean", map[string]any{keyCheckDeviceNodes: 1.0}, []string{keyCheckDeviceNodes}},
		{"every bad key is reported", map[string]any{"a": 1.0, keyWatchInterval: "x"}, []string{"a", keyWatchInterval}},
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
}

func TestHotPlug(t *testing.T) {
	cfg := plugintest.SysfsFixtureConfig(t, fixtureV5e, map[string]any{keyWatchInterval: "20ms"})
	sys, dev := cfg[keySysfsRoot].(string), cfg[keyDevRoot].(string)
	p := plugintest.Configured(t, New(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, err := p.WatchDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-updates; len(first) != 8 {
		t.Fatalf("first list has %d chips", len(first))
	}
	link := filepath.Join(sys, pciDevices, "0000:00:0c.0")
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		description string
		change      func() error
		match       func(map[string]sdk.Device) bool
	}{
		{
			description: "chip 7 is unplugged",
			change:      func() error { return os.Remove(link) },
			match:       func(m map[string]sdk.Device) bool { _, ok := m["7"]; return len(m) == 7 && !ok },
		},
		{
			description: "it is plugged back in",
			change:      func() error { return os.Symlink(target, link) },
			match:       func(m map[string]sdk.Device) bool { return len(m) == 8 },
		},
		{
			description: "/dev/vfio/vfio vanishes: every vfio chip is unhealthy",
			change:      func() error { return os.Remove(filepath.Join(dev, "vfio", "vfio")) },
			match: func(m map[string]sdk.Device) bool {
				return m["0"].Health == sdk.HealthUnhealthy && m["7"].Health == sdk.HealthUnhealthy
			},
		},
		{
			description: "it is back: healthy",
			change:      func() error { return os.WriteFile(filepath.Join(dev, "vfio", "vfio"), nil, 0o644) },
			match: func(m map[string]sdk.Device) bool {
				return m["0"].Health == sdk.HealthHealthy && m["7"].Health == sdk.HealthHealthy
			},
		},
		{
			description: "chip 3 is unbound from vfio-pci: no device node, unhealthy",
			change: func() error {
				drv := filepath.Join(sys, pciDevices, "0000:00:08.0", "driver")
				if err := os.Remove(drv); err != nil {
					return err
				}
				return nil
			},
			match: func(m map[string]sdk.Device) bool {
				return m["3"].Health == sdk.HealthUnhealthy && strings.Contains(m["3"].HealthDescription, "no accel or vfio")
			},
		},
	}
	for _, step := range steps {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.description, err)
		}
		waitForDevices(t, updates, step.description, step.match)
	}
	hw, _ := p.HardwareInfo(context.Background())
	if hw.Status != sdk.HealthDegraded || !strings.Contains(hw.StatusInfo, "3:") {
		t.Fatalf("hardware info %+v", hw)
	}
	if _, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: sdk.Allocation{slotDevice: {"3": decimal.NewFromInt(1)}}}); err == nil {
		t.Fatal("a chip without a device node was prepared")
	}
}

func TestNoMetrics(t *testing.T) {
	p := plugintest.Configured(t, New(), plugintest.SysfsFixtureConfig(t, fixtureV4, nil))
	m, err := p.NodeMetrics(context.Background())
	if err != nil || m != nil {
		t.Fatalf("metrics %v %v", m, err)
	}
}
