package alloc

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// mapStep is one call on a DeviceMap in a fixture.
type mapStep struct {
	description string
	allocate    map[string]string            // request
	repeat      int                          // allocate this many times (default 1)
	minMemory   string                       // overrides the map's min_memory for this step
	apply       map[string]map[string]string // restore an allocation
	free        map[string]map[string]string // free an explicit allocation
	freeSteps   []int                        // free the results of earlier steps
	wantErr     error
	wantResult  map[string]map[string]string
	wantTotal   string // sum of the result of slot "x"/the only slot
	wantState   map[string]string
	othersZero  bool // devices missing from wantState hold zero
}

type mapFixture struct {
	description string
	spec        MapSpec
	steps       []mapStep
}

func runMapFixture(t *testing.T, fx mapFixture) {
	m := mustMap(t, fx.spec)
	results := make([]DeviceAllocation, len(fx.steps))
	for k, st := range fx.steps {
		t.Logf("step %d: %s", k, st.description)
		if st.apply != nil {
			if err := m.Apply(deviceAllocOf(st.apply)); err != nil {
				t.Fatalf("step %d apply: %v", k, err)
			}
		}
		for _, idx := range st.freeSteps {
			if err := m.Free(results[idx]); err != nil {
				t.Fatalf("step %d free step %d: %v", k, idx, err)
			}
		}
		if st.free != nil {
			if err := m.Free(deviceAllocOf(st.free)); err != nil {
				t.Fatalf("step %d free: %v", k, err)
			}
		}
		if st.allocate != nil {
			saved := m.minMemory
			if st.minMemory != "" {
				m.setMinMemory(dec(st.minMemory))
			}
			for range max(st.repeat, 1) {
				before := snapshotValues(m)
				res, err := m.Allocate(slotsOf(st.allocate), nil)
				checkErr(t, err, st.wantErr)
				if err != nil && !sameValues(before, snapshotValues(m)) {
					t.Fatalf("step %d: failed allocation changed the state to %s", k, formatState(m))
				}
				results[k] = res
			}
			m.setMinMemory(saved)
			if st.wantResult != nil {
				checkResult(t, results[k], st.wantResult)
			}
			if st.wantTotal != "" {
				for slot := range st.allocate {
					if got := totalOf(results[k], slot); !got.Equal(dec(st.wantTotal)) {
						t.Errorf("step %d: total %s, want %s (%s)", k, got, st.wantTotal, formatAlloc(results[k]))
					}
				}
			}
		}
		if st.wantState != nil || st.othersZero {
			checkState(t, m, st.wantState, st.othersZero)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func snapshotValues(m *DeviceMap) []decimal.Decimal {
	return append([]decimal.Decimal(nil), m.allocated...)
}

func sameValues(a, b []decimal.Decimal) bool {
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func xMap(typ MapType, strategy Strategy, capacities ...string) MapSpec {
	return MapSpec{Kind: "x", Type: typ, Strategy: strategy, Devices: uniformDevices("a", "x", SlotCount, capacities...)}
}

func withQuantum(spec MapSpec, q string) MapSpec {
	spec.Quantum = dec(q)
	return spec
}

// TestUpstreamMapFixtures reproduces spec §2 acceptance fixtures 1-16 (from
// upstream's tests/unit/agent/test_alloc_map.py) step by step.
func TestUpstreamMapFixtures(t *testing.T) {
	var fixtures []mapFixture
	for _, strategy := range []Strategy{Fill, Evenly} {
		fixtures = append(fixtures, mapFixture{
			description: fmt.Sprintf("1: D-%s[1,1]: 1 -> a0; 3 -> insufficient, state unchanged; free -> all 0", strategy),
			spec:        xMap(Discrete, strategy, "1", "1"),
			steps: []mapStep{
				{description: "allocate 1", allocate: map[string]string{"x": "1"},
					wantResult: map[string]map[string]string{"x": {"a0": "1"}}, wantState: map[string]string{"a0": "1"}, othersZero: true},
				{description: "allocate 3", allocate: map[string]string{"x": "3"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"a0": "1"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		})
	}
	fixtures = append(fixtures,
		mapFixture{
			description: "2: D-FILL[100,100]: 130 -> 100/30; 71 -> insufficient",
			spec:        xMap(Discrete, Fill, "100", "100"),
			steps: []mapStep{
				{description: "130", allocate: map[string]string{"x": "130"},
					wantResult: map[string]map[string]string{"x": {"a0": "100", "a1": "30"}}, wantState: map[string]string{"a0": "100", "a1": "30"}},
				{description: "71", allocate: map[string]string{"x": "71"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"a0": "100", "a1": "30"}},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		},
		mapFixture{
			description: "3: D-EVENLY[100,100]: 130 -> 65/65; 15 -> 8/7; 99 -> insufficient",
			spec:        xMap(Discrete, Evenly, "100", "100"),
			steps: []mapStep{
				{description: "130", allocate: map[string]string{"x": "130"},
					wantResult: map[string]map[string]string{"x": {"a0": "65", "a1": "65"}}},
				{description: "15", allocate: map[string]string{"x": "15"},
					wantResult: map[string]map[string]string{"x": {"a0": "8", "a1": "7"}}, wantState: map[string]string{"a0": "73", "a1": "72"}},
				{description: "99", allocate: map[string]string{"x": "99"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"a0": "73", "a1": "72"}},
				{description: "free both", freeSteps: []int{0, 1}, othersZero: true},
			},
		},
		mapFixture{
			description: "4: D-EVENLY[10,10,10]: 7 -> 3/2/2; 23 -> 7/8/8",
			spec:        xMap(Discrete, Evenly, "10", "10", "10"),
			steps: []mapStep{
				{description: "7", allocate: map[string]string{"x": "7"},
					wantResult: map[string]map[string]string{"x": {"a0": "3", "a1": "2", "a2": "2"}}},
				{description: "23", allocate: map[string]string{"x": "23"},
					wantResult: map[string]map[string]string{"x": {"a0": "7", "a1": "8", "a2": "8"}},
					wantState:  map[string]string{"a0": "10", "a1": "10", "a2": "10"}},
				{description: "free both", freeSteps: []int{0, 1}, othersZero: true},
			},
		},
		mapFixture{
			description: "5: D-EVENLY[2,2,2,2]: 4 -> 1 each; 2 -> cpu0,cpu1; 3 -> insufficient; 2 -> cpu2,cpu3",
			spec:        MapSpec{Kind: "cpu", Devices: uniformDevices("cpu", "cpu", SlotCount, "2", "2", "2", "2")},
			steps: []mapStep{
				{description: "4", allocate: map[string]string{"cpu": "4"},
					wantResult: map[string]map[string]string{"cpu": {"cpu0": "1", "cpu1": "1", "cpu2": "1", "cpu3": "1"}}},
				{description: "2", allocate: map[string]string{"cpu": "2"},
					wantResult: map[string]map[string]string{"cpu": {"cpu0": "1", "cpu1": "1"}},
					wantState:  map[string]string{"cpu0": "2", "cpu1": "2", "cpu2": "1", "cpu3": "1"}},
				{description: "3", allocate: map[string]string{"cpu": "3"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"cpu0": "2", "cpu1": "2", "cpu2": "1", "cpu3": "1"}},
				{description: "2 again", allocate: map[string]string{"cpu": "2"},
					wantResult: map[string]map[string]string{"cpu": {"cpu2": "1", "cpu3": "1"}},
					wantState:  map[string]string{"cpu0": "2", "cpu1": "2", "cpu2": "2", "cpu3": "2"}},
				{description: "free all", freeSteps: []int{0, 1, 3}, othersZero: true},
			},
		},
		mapFixture{
			description: "6: F-FILL[1,1]: 1.5 -> 1.0/0.5; 1.5 -> insufficient",
			spec:        xMap(Fractional, Fill, "1", "1"),
			steps: []mapStep{
				{description: "1.5", allocate: map[string]string{"x": "1.5"},
					wantResult: map[string]map[string]string{"x": {"a0": "1.0", "a1": "0.5"}}},
				{description: "1.5 again", allocate: map[string]string{"x": "1.5"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"a0": "1", "a1": "0.5"}},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		},
		mapFixture{
			description: "7: F-FILL[8x1]: 7.95 -> a0-a6 1.0, a7 0.95; 1.0 -> insufficient",
			spec:        xMap(Fractional, Fill, repeatString("1.0", 8)...),
			steps: []mapStep{
				{description: "7.95", allocate: map[string]string{"x": "7.95"},
					wantResult: map[string]map[string]string{"x": {"a0": "1", "a1": "1", "a2": "1", "a3": "1", "a4": "1", "a5": "1", "a6": "1", "a7": "0.95"}}},
				{description: "1.0", allocate: map[string]string{"x": "1.0"}, wantErr: ErrInsufficientResource,
					wantState: map[string]string{"a6": "1", "a7": "0.95"}},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		},
		mapFixture{
			description: "8: F-FILL[1,1] quantum 0.00001: 1000 x 0.00001 -> 0.005 each; 500 frees of 0.00001 bring a0 back to exactly 0",
			spec:        withQuantum(xMap(Fractional, Fill, "1", "1"), "0.00001"),
			steps: []mapStep{
				{description: "1000 x 0.00001", allocate: map[string]string{"x": "0.00001"}, repeat: 1000,
					wantState: map[string]string{"a0": "0.005", "a1": "0.005"}},
				{description: "free once", free: map[string]map[string]string{"x": {"a0": "0.00001"}},
					wantState: map[string]string{"a0": "0.00499", "a1": "0.005"}},
			},
		},
		mapFixture{
			description: "10: F-EVENLY[0.05,0.1,0.2,0.3,0]: min_memory and best-fit placement, freed between steps",
			spec:        xMap(Fractional, Evenly, "0.05", "0.1", "0.2", "0.3", "0.0"),
			steps: []mapStep{
				{description: "0.66 is more than the total", allocate: map[string]string{"x": "0.66"}, wantErr: ErrInsufficientResource, othersZero: true},
				{description: "0.06 with min_memory 0.6 (upstream passes the float Decimal(0.6))", allocate: map[string]string{"x": "0.06"},
					minMemory: "0.59999999999999997779553950749686919152736663818359375", wantErr: ErrInsufficientResource, othersZero: true},
				{description: "20 x 0.01 fill the smallest devices first", allocate: map[string]string{"x": "0.01"}, repeat: 20,
					wantState: map[string]string{"a0": "0.05", "a1": "0.1", "a2": "0.05"}, othersZero: true},
				{description: "free them", free: map[string]map[string]string{"x": {"a0": "0.05", "a1": "0.1", "a2": "0.05"}}, othersZero: true},
				{description: "0.2 -> a2 (best fit)", allocate: map[string]string{"x": "0.2"},
					wantState: map[string]string{"a2": "0.2"}, othersZero: true},
				{description: "free", freeSteps: []int{4}, othersZero: true},
				{description: "0.2 with min_memory 0.25 -> a3", allocate: map[string]string{"x": "0.2"}, minMemory: "0.25",
					wantState: map[string]string{"a3": "0.2"}, othersZero: true},
				{description: "free", freeSteps: []int{6}, othersZero: true},
				{description: "0.5 -> a2 0.2 + a3 0.3", allocate: map[string]string{"x": "0.5"},
					wantState: map[string]string{"a2": "0.2", "a3": "0.3"}, othersZero: true},
				{description: "free", freeSteps: []int{8}, othersZero: true},
				{description: "0.65 -> all four full", allocate: map[string]string{"x": "0.65"},
					wantState: map[string]string{"a0": "0.05", "a1": "0.1", "a2": "0.2", "a3": "0.3"}, othersZero: true},
				{description: "free", freeSteps: []int{10}, othersZero: true},
				{description: "0.6 with min_memory 0.1 -> a1-a3 full", allocate: map[string]string{"x": "0.6"}, minMemory: "0.1",
					wantState: map[string]string{"a1": "0.1", "a2": "0.2", "a3": "0.3"}, othersZero: true},
				{description: "free", freeSteps: []int{12}, othersZero: true},
			},
		},
		mapFixture{
			description: "10 (end): F-EVENLY[0.3,0.3,0.9]: 1 -> 0.3/0.3/0.4",
			spec:        xMap(Fractional, Evenly, "0.3", "0.3", "0.9"),
			steps: []mapStep{{description: "1", allocate: map[string]string{"x": "1"},
				wantState: map[string]string{"a0": "0.3", "a1": "0.3", "a2": "0.4"}}},
		},
		mapFixture{
			description: "11: F-EVENLY[0.8,0.75,0.7,0.3,0]: 2.31 -> 0.67x3 + 0.3; 2 -> 0.67/0.67/0.66",
			spec:        xMap(Fractional, Evenly, "0.8", "0.75", "0.7", "0.3", "0.0"),
			steps: []mapStep{
				{description: "2.31", allocate: map[string]string{"x": "2.31"},
					wantState: map[string]string{"a0": "0.67", "a1": "0.67", "a2": "0.67", "a3": "0.3"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
				{description: "2", allocate: map[string]string{"x": "2"},
					wantState: map[string]string{"a0": "0.67", "a1": "0.67", "a2": "0.66"}, othersZero: true},
				{description: "free", freeSteps: []int{2}, othersZero: true},
			},
		},
		mapFixture{
			description: "12a: F-EVENLY[2,3,3,5]: 6 -> a1 = a2 = 3",
			spec:        xMap(Fractional, Evenly, "2", "3", "3", "5"),
			steps: []mapStep{
				{description: "6", allocate: map[string]string{"x": "6"}, wantState: map[string]string{"a1": "3", "a2": "3"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		},
		mapFixture{
			description: "12b: F-EVENLY[1,1.5,2,3,3,4,4.5,5,5]: 6 with min_memory 2.5 -> a3 = a4 = 3; 11 with min_memory 0.84 -> a3-a5 = 2.75",
			spec:        xMap(Fractional, Evenly, "1.0", "1.5", "2.0", "3.0", "3.0", "4.0", "4.5", "5.0", "5.0"),
			steps: []mapStep{
				{description: "6", allocate: map[string]string{"x": "6"}, minMemory: "2.5",
					wantState: map[string]string{"a3": "3", "a4": "3"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
				{description: "11", allocate: map[string]string{"x": "11"}, minMemory: "0.84",
					wantState: map[string]string{"a3": "2.75", "a4": "2.75", "a5": "2.75"}},
				{description: "free", freeSteps: []int{2}, othersZero: true},
			},
		},
		mapFixture{
			description: "13: F-EVENLY[8x1]: 6 -> a2-a7 = 1.0 (EVENLY favours the tail)",
			spec:        xMap(Fractional, Evenly, repeatString("1.0", 8)...),
			steps: []mapStep{
				{description: "6", allocate: map[string]string{"x": "6"},
					wantState: map[string]string{"a2": "1", "a3": "1", "a4": "1", "a5": "1", "a6": "1", "a7": "1"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
			},
		},
		mapFixture{
			description: "14 EVENLY: F[1,1] quantum 0.25",
			spec:        withQuantum(xMap(Fractional, Evenly, "1", "1"), "0.25"),
			steps: []mapStep{
				{description: "0.5", allocate: map[string]string{"x": "0.5"}, wantTotal: "0.5"},
				{description: "1.5 -> 0.75/0.75", freeSteps: []int{0}, allocate: map[string]string{"x": "1.5"},
					wantState: map[string]string{"a0": "0.75", "a1": "0.75"}},
				{description: "0.24 -> not a multiple of the quantum", freeSteps: []int{1}, allocate: map[string]string{"x": "0.24"},
					wantErr: ErrNotMultipleOfQuantum, othersZero: true},
				{description: "1.75 splits 0.88/0.87, rounded 0.75/0.75", allocate: map[string]string{"x": "1.75"},
					wantState: map[string]string{"a0": "0.75", "a1": "0.75"}},
				{description: "0.52 -> {a1: 0.5}", freeSteps: []int{3}, allocate: map[string]string{"x": "0.52"},
					wantState: map[string]string{"a1": "0.5"}, othersZero: true},
				{description: "0.42 -> {a1: 0.25}", freeSteps: []int{4}, allocate: map[string]string{"x": "0.42"},
					wantState: map[string]string{"a1": "0.25"}, othersZero: true},
				{description: "3.99 -> insufficient", freeSteps: []int{5}, allocate: map[string]string{"x": "3.99"},
					wantErr: ErrInsufficientResource, othersZero: true},
			},
		},
		mapFixture{
			description: "14 FILL: F[1,1] quantum 0.25",
			spec:        withQuantum(xMap(Fractional, Fill, "1", "1"), "0.25"),
			steps: []mapStep{
				{description: "0.5", allocate: map[string]string{"x": "0.5"}, wantTotal: "0.5"},
				{description: "1.5 -> 1.0/0.5", freeSteps: []int{0}, allocate: map[string]string{"x": "1.5"},
					wantState: map[string]string{"a0": "1", "a1": "0.5"}},
				{description: "0.24 -> not a multiple of the quantum", freeSteps: []int{1}, allocate: map[string]string{"x": "0.24"},
					wantErr: ErrNotMultipleOfQuantum, othersZero: true},
				{description: "0.52 -> {a0: 0.5}", allocate: map[string]string{"x": "0.52"},
					wantState: map[string]string{"a0": "0.5"}, othersZero: true},
				{description: "0.42 -> {a0: 0.25}", freeSteps: []int{3}, allocate: map[string]string{"x": "0.42"},
					wantState: map[string]string{"a0": "0.25"}, othersZero: true},
				{description: "3.99 -> insufficient", freeSteps: []int{4}, allocate: map[string]string{"x": "3.99"},
					wantErr: ErrInsufficientResource, othersZero: true},
				{description: "1.75 -> 1.0/0.75", allocate: map[string]string{"x": "1.75"},
					wantState: map[string]string{"a0": "1", "a1": "0.75"}},
			},
		},
		mapFixture{
			description: "14 quantum 0.3 FILL: 0.5 -> 0.3",
			spec:        withQuantum(xMap(Fractional, Fill, "1", "1"), "0.3"),
			steps: []mapStep{{description: "0.5", allocate: map[string]string{"x": "0.5"}, wantTotal: "0.3",
				wantState: map[string]string{"a0": "0.3"}, othersZero: true}},
		},
		mapFixture{
			description: "quirk (spec §2): quantum 0.25, restored 0.3, then +0.5 -> the device total becomes 0.75",
			spec:        withQuantum(xMap(Fractional, Fill, "1"), "0.25"),
			steps: []mapStep{{description: "restore 0.3 then allocate 0.5", apply: map[string]map[string]string{"x": {"a0": "0.3"}},
				allocate: map[string]string{"x": "0.5"}, wantResult: map[string]map[string]string{"x": {"a0": "0.5"}},
				wantState: map[string]string{"a0": "0.75"}}},
		},
	)
	migDevices := []Device{
		{ID: "a0", Slot: "cuda.device:1g.5gb-mig", SlotKind: SlotUnique, Capacity: dec("1"), NUMANode: -1},
		{ID: "a1", Slot: "cuda.device:1g.5gb-mig", SlotKind: SlotUnique, Capacity: dec("1"), NUMANode: -1},
		{ID: "a2", Slot: "cuda.device", SlotKind: SlotCount, Capacity: dec("1"), NUMANode: -1},
		{ID: "a3", Slot: "cuda.device", SlotKind: SlotCount, Capacity: dec("1"), NUMANode: -1},
		{ID: "a4", Slot: "cuda.device:3g.20gb-mig", SlotKind: SlotUnique, Capacity: dec("1"), NUMANode: -1},
	}
	exclusive := []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"}
	fractionalMIG := append([]Device(nil), migDevices...)
	fractionalMIG[2].Slot, fractionalMIG[3].Slot = "cuda.shares", "cuda.shares"
	fixtures = append(fixtures,
		mapFixture{
			description: "15: exclusive {cuda.device:*-mig, cuda.device, cuda.shares}: cuda.device 2 + MIG 1 -> invalid combination",
			spec:        MapSpec{Kind: "cuda", ExclusiveSlots: exclusive, Devices: migDevices},
			steps: []mapStep{{description: "mixed request", allocate: map[string]string{"cuda.device": "2", "cuda.device:1g.5gb-mig": "1"},
				wantErr: ErrInvalidCombination, othersZero: true}},
		},
		mapFixture{
			description: "16 discrete: unique MIG slots beside count slots",
			spec:        MapSpec{Kind: "cuda", ExclusiveSlots: exclusive, Devices: migDevices},
			steps: []mapStep{
				{description: "cuda.device 2 -> a2, a3", allocate: map[string]string{"cuda.device": "2"},
					wantState: map[string]string{"a2": "1", "a3": "1"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
				{description: "cuda.device 3 -> insufficient", allocate: map[string]string{"cuda.device": "3"}, wantErr: ErrInsufficientResource, othersZero: true},
				{description: "MIG 0 is a no-op", allocate: map[string]string{"cuda.device:1g.5gb-mig": "0"},
					wantResult: map[string]map[string]string{}, othersZero: true},
				{description: "MIG 1.1", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1.1"}, wantErr: ErrInvalidArgument, othersZero: true},
				{description: "MIG 2", allocate: map[string]string{"cuda.device:1g.5gb-mig": "2"}, wantErr: ErrInvalidArgument, othersZero: true},
				{description: "MIG 1 -> a0", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"},
					wantState: map[string]string{"a0": "1"}, othersZero: true},
				{description: "MIG 1 -> a1", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"},
					wantState: map[string]string{"a0": "1", "a1": "1"}, othersZero: true},
				{description: "MIG 1 -> insufficient", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"}, wantErr: ErrInsufficientResource},
				{description: "free both", freeSteps: []int{6, 7}, othersZero: true},
			},
		},
		mapFixture{
			description: "16 fractional FILL: cuda.shares beside unique MIG slots",
			spec:        MapSpec{Kind: "cuda", Type: Fractional, Strategy: Fill, ExclusiveSlots: exclusive, Devices: fractionalMIG},
			steps: []mapStep{
				{description: "cuda.shares 2.0 -> 1/1", allocate: map[string]string{"cuda.shares": "2.0"},
					wantState: map[string]string{"a2": "1", "a3": "1"}, othersZero: true},
				{description: "free", freeSteps: []int{0}, othersZero: true},
				{description: "cuda.shares 2.5 -> insufficient", allocate: map[string]string{"cuda.shares": "2.5"}, wantErr: ErrInsufficientResource, othersZero: true},
				{description: "MIG 0 is a no-op", allocate: map[string]string{"cuda.device:1g.5gb-mig": "0"}, othersZero: true},
				{description: "MIG 0.3", allocate: map[string]string{"cuda.device:1g.5gb-mig": "0.3"}, wantErr: ErrInvalidArgument, othersZero: true},
				{description: "MIG 1.5", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1.5"}, wantErr: ErrInvalidArgument, othersZero: true},
				{description: "MIG 1 -> a0", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"}, wantState: map[string]string{"a0": "1"}, othersZero: true},
				{description: "MIG 1 -> a1", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"}, wantState: map[string]string{"a0": "1", "a1": "1"}, othersZero: true},
				{description: "MIG 1 -> insufficient", allocate: map[string]string{"cuda.device:1g.5gb-mig": "1"}, wantErr: ErrInsufficientResource},
				{description: "free both", freeSteps: []int{6, 7}, othersZero: true},
			},
		},
	)
	for _, fx := range fixtures {
		t.Run(fx.description, func(t *testing.T) { runMapFixture(t, fx) })
	}
}

// TestExactDecimalIteration is fixture 8's second half: 499 more frees of
// 0.00001 must bring a0 to exactly zero (no float drift).
func TestExactDecimalIteration(t *testing.T) {
	m := mustMap(t, withQuantum(xMap(Fractional, Fill, "1", "1"), "0.00001"))
	for range 1000 {
		if _, err := m.Allocate(Slots{"x": dec("0.00001")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 500 {
		if err := m.Free(DeviceAllocation{"x": {"a0": dec("0.00001")}}); err != nil {
			t.Fatal(err)
		}
	}
	checkState(t, m, map[string]string{"a0": "0", "a1": "0.005"}, false)
	if got := allocatedOf(t, m, "a0"); got.Sign() != 0 {
		t.Fatalf("a0 = %s, want exactly 0", got)
	}
}

// TestRandomAllocationsReturnToZero is fixture 9: five rounds of ten random
// FILL allocations (0 to 0.1 at 0.01) on F[1,1], all freed each round.
func TestRandomAllocationsReturnToZero(t *testing.T) {
	m := mustMap(t, xMap(Fractional, Fill, "1.0", "1.0"))
	rng := rand.New(rand.NewPCG(9, 9))
	for round := range 5 {
		var results []DeviceAllocation
		for range 10 {
			amount := decimal.NewFromInt(rng.Int64N(11)).Shift(-2)
			res, err := m.Allocate(Slots{"x": amount}, nil)
			if err != nil {
				t.Fatalf("round %d: allocate %s: %v", round, amount, err)
			}
			results = append(results, res)
		}
		for _, res := range results {
			if err := m.Free(res); err != nil {
				t.Fatal(err)
			}
		}
		checkState(t, m, nil, true)
	}
}

func defragMap(t testing.TB, strategy Strategy, remaining ...string) *DeviceMap {
	t.Helper()
	m := mustMap(t, MapSpec{Kind: "cuda", Type: Fractional, Strategy: strategy, Quantum: dec("0.1"), DenyFragmentation: true,
		Devices: uniformDevices("gpu", "cuda.shares", SlotCount, repeatString("1.0", len(remaining))...)})
	// Upstream pre-occupies with FILL, which puts (1 - remaining) on each
	// device in turn; applying it directly gives the same state.
	occupied := map[string]decimal.Decimal{}
	for i, r := range remaining {
		if used := decOne.Sub(dec(r)); used.Sign() > 0 {
			occupied[fmt.Sprintf("gpu%d", i)] = used
		}
	}
	if err := m.Apply(DeviceAllocation{"cuda.shares": occupied}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFragmentationGuardFreshDevices is fixture 17: the guard on 8 x 1.0
// with quantum 0.1, R = 0.1 .. 8.0.
func TestFragmentationGuardFreshDevices(t *testing.T) {
	for r := int64(1); r <= 80; r++ {
		requested := decimal.New(r, -1)
		minDevices := int(ceilQuo(requested, decOne))
		for _, strategy := range []Strategy{Fill, Evenly} {
			m := defragMap(t, strategy, repeatString("1.0", 8)...)
			res, err := m.Allocate(Slots{"cuda.shares": requested}, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", strategy, requested, err)
			}
			for id, v := range res["cuda.shares"] {
				if _, rem := v.QuoRem(dec("0.1"), 0); !rem.IsZero() {
					t.Errorf("%s %s: %s got %s, not a multiple of 0.1", strategy, requested, id, v)
				}
			}
			used := usedDevices(res, "cuda.shares")
			if strategy == Fill && used != minDevices {
				t.Errorf("FILL %s used %d devices, want exactly %d", requested, used, minDevices)
			}
			if strategy == Evenly && used < minDevices {
				t.Errorf("EVENLY %s used %d devices, want at least %d", requested, used, minDevices)
			}
		}
	}
	t.Run("EVENLY under-allocates after quantum rounding: 1.5 -> {gpu6: 0.7, gpu7: 0.7}; 7.9 -> 8 x 0.9", func(t *testing.T) {
		m := defragMap(t, Evenly, repeatString("1.0", 8)...)
		res, err := m.Allocate(Slots{"cuda.shares": dec("1.5")}, nil)
		checkErr(t, err, nil)
		checkResult(t, res, map[string]map[string]string{"cuda.shares": {"gpu6": "0.7", "gpu7": "0.7"}})
		m = defragMap(t, Evenly, repeatString("1.0", 8)...)
		res, err = m.Allocate(Slots{"cuda.shares": dec("7.9")}, nil)
		checkErr(t, err, nil)
		if got := totalOf(res, "cuda.shares"); !got.Equal(dec("7.2")) || usedDevices(res, "cuda.shares") != 8 {
			t.Errorf("7.9 -> %s, want 8 x 0.9", formatAlloc(res))
		}
	})
	t.Run("guard off: FILL 2.5 -> total 2.5", func(t *testing.T) {
		m := defragMap(t, Fill, repeatString("1.0", 8)...)
		m.denyFragmentation = false
		res, err := m.Allocate(Slots{"cuda.shares": dec("2.5")}, nil)
		checkErr(t, err, nil)
		if got := totalOf(res, "cuda.shares"); !got.Equal(dec("2.5")) {
			t.Errorf("total %s, want 2.5", got)
		}
	})
}

// TestFragmentationGuardBusyDevices is fixture 18: per-device remaining
// capacity -> request, the same outcome for both strategies.
func TestFragmentationGuardBusyDevices(t *testing.T) {
	cases := []struct {
		description string
		remaining   []string
		requested   string
		wantErr     error
		wantTotal   string // checked when set
	}{
		{"gpu0 half free: 2 x 0.7", []string{"0.5", "1.0", "1.0", "1.0"}, "1.4", nil, ""},
		{"gpu0, gpu1 mostly free: 2 x 1.0", []string{"0.7", "0.7", "1.0", "1.0"}, "2.0", nil, ""},
		{"both above the share: 2 x 0.7", []string{"0.9", "1.0"}, "1.4", nil, ""},
		{"non-uniform free, each holds D=0.7", []string{"0.7", "0.8"}, "1.4", nil, ""},
		{"shortfall 0.1 covered by gpu1", []string{"0.7", "0.8"}, "1.5", nil, "1.5"},
		{"N=2, D=0.8 on gpu1 and gpu2", []string{"0.4", "0.8", "1.0"}, "1.6", nil, "1.6"},
		{"N=2 on the two free devices", []string{"0.5", "0.5", "1.0", "1.0"}, "1.6", nil, "1.6"},
		{"N grows to 3 with D=0.5", []string{"0.5", "0.5", "0.5", "0.5"}, "1.5", nil, "1.5"},
		{"N grows to 6 with D=0.3", repeatString("0.3", 8), "1.8", nil, "1.8"},
		{"4 x 0.7 needed, two devices hold 0.5", []string{"0.5", "0.5", "1.0", "1.0"}, "2.8", ErrFragmented, ""},
		{"4 x 0.9 needed, 0.8 free each", []string{"0.8", "0.8", "0.8", "0.8"}, "3.6", ErrFragmented, ""},
		{"2 x 0.8 needed, gpu0 has 0.2", []string{"0.2", "1.0"}, "1.6", ErrFragmented, ""},
		{"N exhausted: 0.2 free each", repeatString("0.2", 4), "1.4", ErrFragmented, ""},
		{"R <= capacity needs one device", repeatString("0.3", 8), "0.8", ErrFragmented, ""},
		{"3.0 on two devices", []string{"1.0", "1.0"}, "3.0", ErrFragmented, ""},
		{"1.1 on one device", []string{"1.0"}, "1.1", ErrFragmented, ""},
	}
	for _, tc := range cases {
		for _, strategy := range []Strategy{Fill, Evenly} {
			t.Run(fmt.Sprintf("%s %s %v -> %s", strategy, tc.description, tc.remaining, tc.requested), func(t *testing.T) {
				m := defragMap(t, strategy, tc.remaining...)
				res, err := m.Allocate(Slots{"cuda.shares": dec(tc.requested)}, nil)
				checkErr(t, err, tc.wantErr)
				if tc.wantTotal != "" {
					if got := totalOf(res, "cuda.shares"); !got.Equal(dec(tc.wantTotal)) {
						t.Errorf("total %s, want %s (%s)", got, tc.wantTotal, formatAlloc(res))
					}
				}
			})
		}
	}
	t.Run("zero request is pruned before the guard", func(t *testing.T) {
		for _, strategy := range []Strategy{Fill, Evenly} {
			m := defragMap(t, strategy, "1.0")
			res, err := m.Allocate(Slots{"cuda.shares": decimal.Zero}, nil)
			checkErr(t, err, nil)
			if _, ok := res["cuda.shares"]; ok {
				t.Errorf("%s: zero request appears in the result: %s", strategy, formatAlloc(res))
			}
		}
	})
}
