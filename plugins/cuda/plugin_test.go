package cuda

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
)

func TestDiscovery(t *testing.T) {
	spec8, err := nvmldriver.LoadFakeSpec(fixture8GPU)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		description string
		config      map[string]any
		// want maps device ID to slot and NUMA node.
		want map[string]struct {
			slot string
			numa int
		}
	}{
		{
			description: "dev config: 2 x A100 on NUMA 0 and 1",
			config:      map[string]any{keyFakeDevices: fixtureDev, keySysfsRoot: fixtureDevSys},
			want: map[string]struct {
				slot string
				numa int
			}{"0": {slotDevice, 0}, "1": {slotDevice, 1}},
		},
		{
			description: "8 GPUs on 2 NUMA nodes; GPU 5's MIG instances replace it",
			config:      fixtureConfig(nil),
			want: func() map[string]struct {
				slot string
				numa int
			} {
				m := map[string]struct {
					slot string
					numa int
				}{}
				for i, g := range spec8.GPUs {
					numa := 0
					if i >= 4 {
						numa = 1
					}
					if i == migParentIndex {
						for _, mig := range g.Mig {
							m[mig.UUID] = struct {
								slot string
								numa int
							}{migSlot(mig.Profile), numa}
						}
						continue
					}
					m[strconv.Itoa(i)] = struct {
						slot string
						numa int
					}{slotDevice, numa}
				}
				return m
			}(),
		},
		{
			description: "without sysfs information every NUMA node is unknown",
			config:      map[string]any{keyFakeDevices: fixtureDev, keySysfsRoot: t.TempDir()},
			want: map[string]struct {
				slot string
				numa int
			}{"0": {slotDevice, sdk.UnknownNUMANode}, "1": {slotDevice, sdk.UnknownNUMANode}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			p := configuredPlugin(t, tc.config, dockerAgent())
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
				if d.SlotName != w.slot || d.NUMANode != w.numa {
					t.Errorf("device %s: slot %q NUMA %d, want %q NUMA %d", d.ID, d.SlotName, d.NUMANode, w.slot, w.numa)
				}
				if d.Health != sdk.HealthHealthy || !d.Capacity.Equal(decimal.NewFromInt(1)) || d.UUID == "" || d.MemoryBytes == 0 {
					t.Errorf("device %s: %+v", d.ID, d)
				}
			}
			desc, err := p.Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := desc.Validate(); err != nil {
				t.Fatalf("description invalid: %v", err)
			}
		})
	}
}

func TestNUMANodeFromSysfs(t *testing.T) {
	root := t.TempDir()
	write := func(bus, content string) {
		dir := filepath.Join(root, "bus", "pci", "devices", bus)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "numa_node"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0000:07:00.0", "1\n")
	write("0000:08:00.0", "-1\n")
	write("0000:09:00.0", "garbage\n")
	write("0000:0b:00.0", "99999999\n")
	tests := []struct {
		description string
		busID       string
		want        int
	}{
		{"node from sysfs", "0000:07:00.0", 1},
		{"-1 means no NUMA information", "0000:08:00.0", sdk.UnknownNUMANode},
		{"unparsable file", "0000:09:00.0", sdk.UnknownNUMANode},
		{"missing device", "0000:0a:00.0", sdk.UnknownNUMANode},
		{"an absurd node number", "0000:0b:00.0", sdk.UnknownNUMANode},
		{"path traversal is refused", "../../../etc", sdk.UnknownNUMANode},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if got := numaNodeOf(root, tc.busID); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestMIGSlots(t *testing.T) {
	p := configuredPlugin(t, fixtureConfig(nil), dockerAgent())
	desc, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kind := desc.Kinds[0]
	var slots []string
	for _, st := range kind.SlotTypes {
		slots = append(slots, st.Name)
		wantKind := sdk.SlotCount
		if strings.HasSuffix(st.Name, "-mig") {
			wantKind = sdk.SlotUnique
		}
		if st.Kind != wantKind {
			t.Errorf("slot %s kind %s, want %s", st.Name, st.Kind, wantKind)
		}
	}
	wantSlots := []string{slotDevice, "cuda.device:1g.10gb-mig", "cuda.device:2g.20gb-mig", "cuda.device:3g.40gb-mig"}
	if !slices.Equal(slots, wantSlots) {
		t.Fatalf("slots %v, want %v", slots, wantSlots)
	}
	if !slices.Equal(kind.ExclusiveSlotPatterns, []string{slotDevice, slotShares, "cuda.device:*-mig"}) {
		t.Fatalf("exclusive patterns %v", kind.ExclusiveSlotPatterns)
	}
	devs, _ := p.ListDevices(context.Background())
	perSlot := map[string]int{}
	for _, d := range devs {
		perSlot[d.SlotName]++
		if d.ID == strconv.Itoa(migParentIndex) {
			t.Fatalf("MIG parent GPU %d must be dropped", migParentIndex)
		}
	}
	if perSlot["cuda.device:1g.10gb-mig"] != 2 || perSlot[slotDevice] != 7 {
		t.Fatalf("devices per slot %v", perSlot)
	}
}

func TestFractionalShares(t *testing.T) {
	tests := []struct {
		description string
		extra       map[string]any
		wantShare   string
		wantQuantum string
	}{
		{"defaults: min(80GiB/2GiB, 108/8) = 13.5", nil, "13.5", "0.01"},
		{"memory-bound: min(80GiB/10GiB, 108/8) = 8", map[string]any{keyUnitMem: "10g"}, "8", "0.01"},
		{"rounded down to 0.01: 80/3 = 26.666…", map[string]any{keyUnitMem: "3g", keyUnitProc: float64(2), keyQuantumSize: "0.1"}, "26.66", "0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			extra := map[string]any{keyAllocationMode: "fractional"}
			for k, v := range tc.extra {
				extra[k] = v
			}
			p := configuredPlugin(t, fixtureConfig(extra), dockerAgent())
			devs, _ := p.ListDevices(context.Background())
			shares := 0
			for _, d := range devs {
				if strings.HasSuffix(d.SlotName, "-mig") {
					if !d.Capacity.Equal(decimal.NewFromInt(1)) {
						t.Errorf("MIG %s capacity %s, want 1", d.ID, d.Capacity)
					}
					continue
				}
				shares++
				if d.SlotName != slotShares || !d.Capacity.Equal(dec(tc.wantShare)) {
					t.Errorf("device %s: slot %s capacity %s, want %s %s", d.ID, d.SlotName, d.Capacity, slotShares, tc.wantShare)
				}
			}
			if shares != 7 {
				t.Fatalf("%d share devices, want 7", shares)
			}
			desc, _ := p.Describe(context.Background())
			am := desc.Kinds[0].AllocMap
			if am.Kind != sdk.AllocFractional || am.Strategy != sdk.StrategyEvenly || !am.Quantum.Equal(dec(tc.wantQuantum)) {
				t.Fatalf("alloc map %+v", am)
			}
			if desc.Kinds[0].SlotTypes[0].Name != slotShares || desc.Kinds[0].SlotTypes[0].HumanReadableName != "fGPU" {
				t.Fatalf("first slot %+v", desc.Kinds[0].SlotTypes[0])
			}
			if err := desc.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDeviceMask(t *testing.T) {
	spec, _ := nvmldriver.LoadFakeSpec(fixture8GPU)
	p := configuredPlugin(t, fixtureConfig(map[string]any{
		keyDeviceMask: []any{spec.GPUs[0].UUID, spec.GPUs[migParentIndex].UUID},
	}), dockerAgent())
	devs, _ := p.ListDevices(context.Background())
	for _, d := range devs {
		if d.UUID == spec.GPUs[0].UUID || d.Attributes["mig_parent_uuid"] == spec.GPUs[migParentIndex].UUID {
			t.Fatalf("masked device listed: %+v", d)
		}
	}
	if len(devs) != 6 {
		t.Fatalf("%d devices, want 6 (7 whole GPUs minus 1; MIG parent masked with its instances)", len(devs))
	}
	if _, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{
		Allocation: sdk.Allocation{slotDevice: {"0": decimal.NewFromInt(1)}},
	}); err == nil {
		t.Fatal("a masked device must not be attachable")
	}
}

func TestResolveAttach(t *testing.T) {
	withSpec, withoutSpec := []string{"testdata/cdi/nvidia"}, []string{"testdata/cdi/other", "testdata/cdi/missing"}
	tests := []struct {
		description string
		configured  attachMethod
		agent       sdk.AgentInfo
		cdiDirs     []string
		want        attachMethod
		usable      bool
	}{
		{"Docker 28 with the nvidia runtime uses DeviceRequests", attachAuto,
			sdk.AgentInfo{DockerVersion: "28.1.1", DockerRuntimes: []string{"runc", "nvidia"}}, withoutSpec, attachDeviceRequest, true},
		{"Docker 19.03 is the first with DeviceRequests", attachAuto,
			sdk.AgentInfo{DockerVersion: "19.03.0", DockerRuntimes: []string{"nvidia"}}, withoutSpec, attachDeviceRequest, true},
		{"Docker 18.09 uses the legacy runtime", attachAuto,
			sdk.AgentInfo{DockerVersion: "18.09.0", DockerRuntimes: []string{"runc", "nvidia"}}, withoutSpec, attachRuntime, true},
		{"Docker without the nvidia runtime and no CDI spec has no method", attachAuto,
			sdk.AgentInfo{DockerVersion: "28.1.1", DockerRuntimes: []string{"runc"}}, withoutSpec, "", false},
		{"Podman without the nvidia runtime but with a CDI spec uses CDI", attachAuto,
			sdk.AgentInfo{DockerVersion: "5.4.0", DockerRuntimes: []string{"runc", "crun"}}, withSpec, attachCDI, true},
		{"an unparsable engine version has no method", attachAuto,
			sdk.AgentInfo{DockerVersion: "unknown", DockerRuntimes: []string{"nvidia"}}, withSpec, "", false},
		{"a configured method is used as is", attachCDI, sdk.AgentInfo{}, withoutSpec, attachCDI, true},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got := resolveAttach(tc.configured, tc.agent, tc.cdiDirs)
			if got.method != tc.want || got.usable != tc.usable || got.reason == "" {
				t.Fatalf("got %+v, want method %q usable %v with a reason", got, tc.want, tc.usable)
			}
		})
	}
}

func TestPrepareContainerPerAttachMethod(t *testing.T) {
	spec, _ := nvmldriver.LoadFakeSpec(fixture8GPU)
	uuid0, uuid2 := spec.GPUs[0].UUID, spec.GPUs[2].UUID
	mig := spec.GPUs[migParentIndex].Mig[2] // 1g.10gb
	twoGPUs := sdk.Allocation{slotDevice: {"2": decimal.NewFromInt(1), "0": decimal.NewFromInt(1)}}
	oneMIG := sdk.Allocation{migSlot(mig.Profile): {mig.UUID: decimal.NewFromInt(1)}}
	caps := [][]string{{"utility", "compute", "video", "graphics", "display"}}
	tests := []struct {
		description string
		method      string
		alloc       sdk.Allocation
		check       func(t *testing.T, s sdk.ContainerSpec)
	}{
		{"CDI names GPUs by UUID", "cdi", twoGPUs, func(t *testing.T, s sdk.ContainerSpec) {
			if !slices.Equal(s.CDIDevices, []string{"nvidia.com/gpu=" + uuid0, "nvidia.com/gpu=" + uuid2}) {
				t.Fatalf("CDI devices %v", s.CDIDevices)
			}
			if s.Runtime != "" || len(s.DeviceRequests) != 0 {
				t.Fatalf("CDI must not set the runtime or device requests: %+v", s)
			}
		}},
		{"device-request asks the nvidia driver for the UUIDs", "device-request", twoGPUs, func(t *testing.T, s sdk.ContainerSpec) {
			want := sdk.DeviceRequest{Driver: "nvidia", DeviceIDs: []string{uuid0, uuid2}, Capabilities: caps}
			if len(s.DeviceRequests) != 1 || s.DeviceRequests[0].Driver != want.Driver ||
				!slices.Equal(s.DeviceRequests[0].DeviceIDs, want.DeviceIDs) || !slices.Equal(s.DeviceRequests[0].Capabilities[0], caps[0]) {
				t.Fatalf("device requests %+v", s.DeviceRequests)
			}
			if s.Runtime != "" || len(s.CDIDevices) != 0 {
				t.Fatalf("unexpected runtime/CDI: %+v", s)
			}
		}},
		{"runtime selects the nvidia runtime with all capabilities", "runtime", twoGPUs, func(t *testing.T, s sdk.ContainerSpec) {
			if s.Runtime != "nvidia" || s.Env["NVIDIA_DRIVER_CAPABILITIES"] != "all" {
				t.Fatalf("runtime %q env %v", s.Runtime, s.Env)
			}
		}},
		{"env only sets the environment", "env", twoGPUs, func(t *testing.T, s sdk.ContainerSpec) {
			if s.Runtime != "" || len(s.DeviceRequests) != 0 || len(s.CDIDevices) != 0 {
				t.Fatalf("env must set nothing but the environment: %+v", s)
			}
		}},
		{"a MIG instance goes by its MIG UUID", "cdi", oneMIG, func(t *testing.T, s sdk.ContainerSpec) {
			if !slices.Equal(s.CDIDevices, []string{"nvidia.com/gpu=" + mig.UUID}) ||
				s.Env["NVIDIA_VISIBLE_DEVICES"] != mig.UUID || s.Env["CUDA_VISIBLE_DEVICES"] != "0" {
				t.Fatalf("spec %+v", s)
			}
			if s.ResourceData["CUDA_GLOBAL_DEVICE_IDS"] != "0:"+mig.UUID || s.ResourceData["CUDA_RESOURCE_VIRTUALIZED"] != "0" {
				t.Fatalf("resource data %v", s.ResourceData)
			}
			if s.AttachedDevices[0].Data["smp"] != "14" || s.AttachedDevices[0].Data["mem"] != strconv.FormatUint(uint64(mig.Memory), 10) {
				t.Fatalf("attached %+v", s.AttachedDevices)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			p := configuredPlugin(t, fixtureConfig(map[string]any{keyAttachMethod: tc.method}), sdk.AgentInfo{})
			s, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: tc.alloc, KernelID: "k1"})
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.alloc[slotDevice]) == 2 {
				if s.Env["NVIDIA_VISIBLE_DEVICES"] != uuid0+","+uuid2 || s.Env["CUDA_VISIBLE_DEVICES"] != "0,1" {
					t.Fatalf("env %v", s.Env)
				}
				if s.ResourceData["CUDA_GLOBAL_DEVICE_IDS"] != "0:0,1:2" || s.ResourceData["CUDA_RESOURCE_VIRTUALIZED"] != "0" {
					t.Fatalf("resource data %v", s.ResourceData)
				}
				if _, ok := s.ResourceData["CUDA_MEMORY_LIMITS"]; ok {
					t.Fatal("discrete allocations carry no memory limits")
				}
				if len(s.AttachedDevices) != 2 || s.AttachedDevices[0].DeviceID != "0" || s.AttachedDevices[1].DeviceID != "2" ||
					s.AttachedDevices[0].ModelName != "NVIDIA A100-SXM4-80GB" || s.AttachedDevices[0].Data["smp"] != "108" ||
					s.AttachedDevices[0].Data["mem"] != strconv.FormatUint(80<<30, 10) {
					t.Fatalf("attached devices %+v", s.AttachedDevices)
				}
			}
			tc.check(t, s)
		})
	}
}

func TestPrepareContainerFractional(t *testing.T) {
	p := configuredPlugin(t, fixtureConfig(map[string]any{keyAllocationMode: "fractional", keyAttachMethod: "device-request"}), sdk.AgentInfo{})
	s, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{
		Allocation: sdk.Allocation{slotShares: {"0": dec("0.5"), "1": dec("1.25")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CUDA_GLOBAL_DEVICE_IDS":    "0:0,1:1",
		"CUDA_RESOURCE_VIRTUALIZED": "1",
		// 0.5 × 2 GiB = 1 GiB and max(0.5 × 8, 4) SMs; 1.25 × 2 GiB, 10 SMs.
		"CUDA_MEMORY_LIMITS":    "0:1g,1:2.5g",
		"CUDA_PROCESSOR_LIMITS": "0:4,1:10",
	}
	for k, v := range want {
		if s.ResourceData[k] != v {
			t.Errorf("%s = %q, want %q", k, s.ResourceData[k], v)
		}
	}
	if s.AttachedDevices[1].Data["smp"] != "10" || s.AttachedDevices[1].Data["mem"] != strconv.FormatInt(5<<29, 10) {
		t.Fatalf("attached %+v", s.AttachedDevices)
	}
}

func TestPrepareContainerErrors(t *testing.T) {
	spec, _ := nvmldriver.LoadFakeSpec(fixture8GPU)
	mig := spec.GPUs[migParentIndex].Mig[0]
	tests := []struct {
		description string
		alloc       sdk.Allocation
		wantErr     string
	}{
		{"unknown device", sdk.Allocation{slotDevice: {"9": decimal.NewFromInt(1)}}, `device "9" is not a known CUDA device`},
		{"the MIG parent is not a device", sdk.Allocation{slotDevice: {"5": decimal.NewFromInt(1)}}, "not a known CUDA device"},
		{"shares slot in discrete mode", sdk.Allocation{slotShares: {"0": dec("0.5")}}, `provides slot "cuda.device"`},
		{"MIG instance under the whole-GPU slot", sdk.Allocation{slotDevice: {mig.UUID: decimal.NewFromInt(1)}}, "provides slot"},
		{"more than a whole GPU", sdk.Allocation{slotDevice: {"0": decimal.NewFromInt(2)}}, "outside 0..1"},
		{"another plugin's slot", sdk.Allocation{"rocm.device": {"0": decimal.NewFromInt(1)}}, "does not belong"},
	}
	p := configuredPlugin(t, fixtureConfig(map[string]any{keyAttachMethod: "cdi"}), sdk.AgentInfo{})
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			_, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: tc.alloc})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("no attach method: a clear error naming the key", func(t *testing.T) {
		fake, _ := injectedFake(t)
		p := configuredPlugin(t, map[string]any{keySysfsRoot: fixtureSysfs, keyCDISpecDirs: []any{"testdata/cdi/other"}},
			sdk.AgentInfo{DockerVersion: "28.1.1", DockerRuntimes: []string{"runc"}}, WithDriver(fake))
		_, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{Allocation: sdk.Allocation{slotDevice: {"0": decimal.NewFromInt(1)}}})
		if err == nil || !strings.Contains(err.Error(), keyAttachMethod) || !strings.Contains(err.Error(), "nvidia") {
			t.Fatalf("error = %v", err)
		}
		hw, _ := p.HardwareInfo(context.Background())
		if hw.Status != sdk.HealthDegraded {
			t.Fatalf("hardware status %s, want degraded: %s", hw.Status, hw.StatusInfo)
		}
	})
}

func TestRestoreRoundTrip(t *testing.T) {
	spec, _ := nvmldriver.LoadFakeSpec(fixture8GPU)
	migA, migB := spec.GPUs[migParentIndex].Mig[2], spec.GPUs[migParentIndex].Mig[0]
	tests := []struct {
		description string
		mode        string
		alloc       sdk.Allocation
	}{
		{"whole GPUs", "discrete", sdk.Allocation{slotDevice: {"0": decimal.NewFromInt(1), "7": decimal.NewFromInt(1)}}},
		{"one MIG instance", "discrete", sdk.Allocation{migSlot(migA.Profile): {migA.UUID: decimal.NewFromInt(1)}}},
		{"another MIG profile", "discrete", sdk.Allocation{migSlot(migB.Profile): {migB.UUID: decimal.NewFromInt(1)}}},
		{"fractional shares", "fractional", sdk.Allocation{slotShares: {"1": dec("0.25"), "3": dec("13.5")}}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			p := configuredPlugin(t, fixtureConfig(map[string]any{keyAllocationMode: tc.mode, keyAttachMethod: "cdi"}), sdk.AgentInfo{})
			ctx := context.Background()
			cs, err := p.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: tc.alloc})
			if err != nil {
				t.Fatal(err)
			}
			// Write resource.txt the way the agent does: its own lines, the
			// plugin's data and one _SHARES line per slot.
			lines := map[string]string{"CPU_SHARES": "0:1,1:1", "MEM_SHARES": "root:4g"}
			for k, v := range cs.ResourceData {
				lines[k] = v
			}
			for slot, amounts := range tc.alloc {
				k, v := sdk.FormatShares(slot, amounts, false)
				lines[k] = v
			}
			var file strings.Builder
			if err := sdk.WriteResourceData(&file, lines); err != nil {
				t.Fatal(err)
			}
			data, err := sdk.ParseResourceData(strings.NewReader(file.String()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: data})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.alloc) {
				t.Fatalf("restored %v, want %v\nresource.txt:\n%s", got, tc.alloc, file.String())
			}
			for slot, amounts := range tc.alloc {
				if len(got[slot]) != len(amounts) {
					t.Fatalf("slot %s: restored %v, want %v", slot, got[slot], amounts)
				}
				for id, amount := range amounts {
					if !got[slot][id].Equal(amount) {
						t.Fatalf("slot %s device %s: restored %s, want %s", slot, id, got[slot][id], amount)
					}
				}
			}
		})
	}
	t.Run("a malformed shares line is an error naming the key", func(t *testing.T) {
		p := New()
		_, err := p.RestoreAllocation(context.Background(), sdk.RestoreRequest{ResourceData: map[string]string{"CUDA.DEVICE_SHARES": "0:lots"}})
		if err == nil || !strings.Contains(err.Error(), "CUDA.DEVICE_SHARES") {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestNoDriver(t *testing.T) {
	p := configuredPlugin(t, map[string]any{keyNVMLLibrary: filepath.Join(t.TempDir(), "libnvidia-ml.so.1")}, dockerAgent())
	ctx := context.Background()
	devs, err := p.ListDevices(ctx)
	if err != nil || len(devs) != 0 {
		t.Fatalf("devices %v err %v, want none", devs, err)
	}
	hw, err := p.HardwareInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hw.Status != sdk.HealthUnknown || !strings.Contains(hw.StatusInfo, "no NVIDIA driver") {
		t.Fatalf("hardware info %+v", hw)
	}
	metrics, err := p.NodeMetrics(ctx)
	if err != nil || len(metrics) != 0 {
		t.Fatalf("metrics %v err %v", metrics, err)
	}
	desc, _ := p.Describe(ctx)
	if desc.ExtraInfo["cuda_support"] != "false" {
		t.Fatalf("extra info %v", desc.ExtraInfo)
	}
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		description string
		config      map[string]any
		wantKeys    []string
	}{
		{"unknown key", map[string]any{"allocation_mode": "discrete"}, []string{"allocation_mode"}},
		{"bad allocation mode", map[string]any{keyAllocationMode: "shared"}, []string{keyAllocationMode}},
		{"unit-mem below 512m", map[string]any{keyUnitMem: "256m"}, []string{keyUnitMem}},
		{"unit-mem not a size", map[string]any{keyUnitMem: "big"}, []string{keyUnitMem}},
		{"unit-proc below 2", map[string]any{keyUnitProc: float64(1)}, []string{keyUnitProc}},
		{"unit-proc fractional", map[string]any{keyUnitProc: 2.5}, []string{keyUnitProc}},
		{"quantum-size zero", map[string]any{keyQuantumSize: "0"}, []string{keyQuantumSize}},
		{"quantum-size above 1", map[string]any{keyQuantumSize: float64(2)}, []string{keyQuantumSize}},
		{"device-mask of numbers", map[string]any{keyDeviceMask: []any{float64(1)}}, []string{keyDeviceMask}},
		{"attach-method unknown", map[string]any{keyAttachMethod: "magic"}, []string{keyAttachMethod}},
		{"ignored-xids not a list", map[string]any{keyIgnoredXids: "13"}, []string{keyIgnoredXids}},
		{"ignored-xids negative", map[string]any{keyIgnoredXids: []any{float64(-1)}}, []string{keyIgnoredXids}},
		{"health-recovery-period not a duration", map[string]any{keyHealthRecoveryPeriod: "soon"}, []string{keyHealthRecoveryPeriod}},
		{"watch-interval too short", map[string]any{keyWatchInterval: "1ms"}, []string{keyWatchInterval}},
		{"sysfs-root missing", map[string]any{keySysfsRoot: "testdata/no-such-dir"}, []string{keySysfsRoot}},
		{"sysfs-root is a file", map[string]any{keySysfsRoot: fixture8GPU}, []string{keySysfsRoot}},
		{"fake-devices missing", map[string]any{keyFakeDevices: "testdata/none.toml"}, []string{keyFakeDevices}},
		{"cdi-spec-dirs a string", map[string]any{keyCDISpecDirs: "/etc/cdi"}, []string{keyCDISpecDirs}},
		{"every bad key is reported at once", map[string]any{keyAllocationMode: 1.0, keyUnitProc: "x", "nope": true},
			[]string{keyAllocationMode, "nope", keyUnitProc}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			p := New()
			t.Cleanup(p.Close)
			err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: tc.config})
			var cerr *sdk.ConfigError
			if !asConfigError(err, &cerr) {
				t.Fatalf("error = %v (%T), want *sdk.ConfigError", err, err)
			}
			var keys []string
			for _, pr := range cerr.Problems {
				keys = append(keys, pr.Key)
				if pr.Reason == "" {
					t.Errorf("problem for %s has no reason", pr.Key)
				}
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Fatalf("problem keys %v, want %v (%v)", keys, tc.wantKeys, err)
			}
		})
	}
	t.Run("a broken fake file names fake-devices", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.toml")
		if err := os.WriteFile(path, []byte("[[gpu]]\nuuid = 3\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := New().Configure(context.Background(), sdk.ConfigureRequest{Config: map[string]any{keyFakeDevices: path}})
		var cerr *sdk.ConfigError
		if !asConfigError(err, &cerr) || cerr.Problems[0].Key != keyFakeDevices {
			t.Fatalf("error = %v", err)
		}
	})
}
