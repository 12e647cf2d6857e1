package resources

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/alloc/accounting"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/proto/sdk"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// intrinsicPlugin describes cpu cores and memory like plugins/cpu does.
func intrinsicPlugin(cores int, memBytes int64) Plugin {
	p := Plugin{Description: sdk.Description{
		Name: "cpu",
		Kinds: []sdk.ResourceKind{
			{Key: "cpu", SlotTypes: []sdk.SlotType{{Name: "cpu", Kind: sdk.SlotCount}},
				AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly}},
			{Key: "mem", SlotTypes: []sdk.SlotType{{Name: "mem", Kind: sdk.SlotBytes}},
				AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyFill}},
		},
	}}
	for i := range cores {
		p.Devices = append(p.Devices, sdk.Device{ID: decimal.NewFromInt(int64(i)).String(), SlotName: "cpu", Capacity: dec("1"), NUMANode: i % 2})
	}
	p.Devices = append(p.Devices, sdk.Device{ID: "root", SlotName: "mem", Capacity: decimal.NewFromInt(memBytes)})
	return p
}

func sharesPlugin() Plugin {
	return Plugin{
		Description: sdk.Description{Name: "vendor", Kinds: []sdk.ResourceKind{{
			Key:       "npu",
			SlotTypes: []sdk.SlotType{{Name: "npu.shares", Kind: sdk.SlotCount}},
			AllocMap:  sdk.AllocMapSpec{Kind: sdk.AllocFractional, Strategy: sdk.StrategyEvenly, Quantum: dec("0.1"), AllowFragmentation: true},
		}}},
		Devices: []sdk.Device{
			{ID: "n0", SlotName: "npu.shares", Capacity: dec("1"), NUMANode: 0},
			{ID: "n1", SlotName: "npu.shares", Capacity: dec("1"), NUMANode: 1},
		},
	}
}

func TestMapSpecs(t *testing.T) {
	specs, err := MapSpecs([]Plugin{intrinsicPlugin(4, 1<<34), sharesPlugin()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		description string
		kind        string
		wantType    alloc.MapType
		wantStrat   alloc.Strategy
		wantDevices int
		wantDeny    bool
	}{
		{description: "cpu cores form a discrete EVENLY map", kind: "cpu", wantType: alloc.Discrete, wantStrat: alloc.Evenly, wantDevices: 4, wantDeny: true},
		{description: "memory is one discrete FILL device", kind: "mem", wantType: alloc.Discrete, wantStrat: alloc.Fill, wantDevices: 1, wantDeny: true},
		{description: "a fractional vendor kind keeps its quantum and fragmentation setting", kind: "npu", wantType: alloc.Fractional, wantStrat: alloc.Evenly, wantDevices: 2},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			i := slices.IndexFunc(specs, func(s alloc.MapSpec) bool { return s.Kind == tc.kind })
			if i < 0 {
				t.Fatalf("no map for kind %q", tc.kind)
			}
			s := specs[i]
			if s.Type != tc.wantType || s.Strategy != tc.wantStrat || len(s.Devices) != tc.wantDevices || s.DenyFragmentation != tc.wantDeny {
				t.Fatalf("unexpected spec %+v", s)
			}
		})
	}
}

func TestAllocationOrder(t *testing.T) {
	specs := []alloc.MapSpec{{Kind: "cpu"}, {Kind: "mem"}, {Kind: "npu"}, {Kind: "cuda"}, {Kind: "abc"}}
	cases := []struct {
		description string
		configured  []string
		wantOrder   []string
		wantAdded   []string
	}{
		{description: "the default order gets vendor kinds before cpu", configured: nil,
			wantOrder: []string{"cuda", "rocm", "tpu", "abc", "npu", "cpu", "mem"}, wantAdded: []string{"abc", "npu"}},
		{description: "a configured order that names every kind is kept", configured: []string{"npu", "abc", "cuda", "mem", "cpu"},
			wantOrder: []string{"npu", "abc", "cuda", "mem", "cpu"}},
		{description: "an order without cpu or mem gets the kinds at its end", configured: []string{"cuda"},
			wantOrder: []string{"cuda", "abc", "cpu", "mem", "npu"}, wantAdded: []string{"abc", "cpu", "mem", "npu"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			order, added := AllocationOrder(tc.configured, specs)
			if !slices.Equal(order, tc.wantOrder) || !slices.Equal(added, tc.wantAdded) {
				t.Fatalf("order %v added %v; want %v %v", order, added, tc.wantOrder, tc.wantAdded)
			}
		})
	}
}

func TestAllocatorAndReportedSlots(t *testing.T) {
	specs, err := MapSpecs([]Plugin{intrinsicPlugin(4, 16<<30), sharesPlugin()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.ResourceConfig{ReservedCPU: 1, ReservedMem: 1 << 30, MemoryAlignSize: 16 << 20, AffinityPolicy: config.AffinityInterleaved}
	a, added, err := NewAllocator(cfg, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []string{"npu"}) {
		t.Fatalf("added kinds %v", added)
	}
	reported, err := ReportedSlots(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	// Upstream's example: 16 GiB with 1 GiB reserved reports 15 GiB.
	if !reported["cpu"].Equal(dec("3")) || !reported["mem"].Equal(decimal.NewFromInt(15<<30)) || !reported["npu.shares"].Equal(dec("2")) {
		t.Fatalf("reported %v", reported)
	}
	got, err := a.Allocate(alloc.Slots{"cpu": dec("2"), "mem": dec("1073741824"), "npu.shares": dec("0.5")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got["cpu"]["cpu"]) != 2 || !got["mem"]["mem"]["root"].Equal(dec("1073741824")) {
		t.Fatalf("allocation %v", got)
	}
	if _, err := a.Allocate(alloc.Slots{"cpu": dec("3")}); !errors.Is(err, alloc.ErrInsufficientResource) {
		t.Fatalf("over-allocation: %v", err)
	}
	if err := a.Free(got); err != nil {
		t.Fatal(err)
	}

	cfg.ReservedCPU = 4
	if _, err := ReportedSlots(cfg, a); !errors.Is(err, accounting.ErrInitialization) {
		t.Fatalf("reserving every core: %v", err)
	}
}

// TestReportedSlotsByAllocationMode pins upstream's ResourceAllocator
// (src/ai/backend/agent/resources.py, 26.8.1) for a single agent: shared and
// auto-split report the node less the reservation, manual reports exactly
// [resource.allocations] with mem aligned to memory-align-size.
func TestReportedSlotsByAllocationMode(t *testing.T) {
	specs, err := MapSpecs([]Plugin{intrinsicPlugin(4, 16<<30), sharesPlugin()})
	if err != nil {
		t.Fatal(err)
	}
	manual := func(cpu int, mem config.ByteSize, devices map[string]string) *config.ResourceAllocations {
		a := &config.ResourceAllocations{CPU: cpu, Mem: mem, Devices: map[string]decimal.Decimal{}}
		for slot, amount := range devices {
			a.Devices[slot] = dec(amount)
		}
		return a
	}
	cases := []struct {
		description string
		mode        config.AllocationMode
		allocations *config.ResourceAllocations
		want        map[string]string
		wantErr     string
	}{
		{"shared: the node less the reservation", config.AllocationShared, nil,
			map[string]string{"cpu": "3", "mem": "16106127360", "npu.shares": "2"}, ""},
		{"auto-split with one agent is shared", config.AllocationAutoSplit, nil,
			map[string]string{"cpu": "3", "mem": "16106127360", "npu.shares": "2"}, ""},
		{"manual: exactly the allocations", config.AllocationManual, manual(1, 1<<30, map[string]string{"npu.shares": "0.5"}),
			map[string]string{"cpu": "1", "mem": "1073741824", "npu.shares": "0.5"}, ""},
		{"manual: mem floored to memory-align-size (16 MiB)", config.AllocationManual, manual(2, 1<<30+5<<20, map[string]string{"npu.shares": "1"}),
			map[string]string{"cpu": "2", "mem": "1073741824", "npu.shares": "1"}, ""},
		{"manual: a device slot missing is named", config.AllocationManual, manual(1, 1<<30, nil),
			nil, `slot "npu.shares"`},
		{"manual: more than the node has", config.AllocationManual, manual(8, 1<<30, map[string]string{"npu.shares": "1"}),
			nil, "slot cpu is allocated 8 but the node has 3"},
	}
	for _, tc := range cases {
		cfg := config.ResourceConfig{ReservedCPU: 1, ReservedMem: 1 << 30, MemoryAlignSize: 16 << 20,
			AffinityPolicy: config.AffinityInterleaved, AllocationMode: tc.mode, Allocations: tc.allocations}
		a, _, err := NewAllocator(cfg, specs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReportedSlots(cfg, a)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one containing %q", tc.description, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		gotStrings := map[string]string{}
		for slot, amount := range got {
			gotStrings[slot] = amount.String()
		}
		if !reflect.DeepEqual(gotStrings, tc.want) {
			t.Errorf("%s: reported %v, want %v", tc.description, gotStrings, tc.want)
		}
	}
}
