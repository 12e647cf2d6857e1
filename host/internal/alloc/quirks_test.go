package alloc

import (
	"errors"
	"testing"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

// TestUpstreamQuirks pins behaviour the spec lists as acceptance behaviour
// even though it surprises.
func TestUpstreamQuirks(t *testing.T) {
	cases := []struct {
		description string
		spec        MapSpec
		request     map[string]string
		wantErr     error
		wantResult  map[string]map[string]string
	}{
		{"discrete EVENLY truncates with int(): 1.5 becomes 1 silently",
			xMap(Discrete, Evenly, "2", "2"), map[string]string{"x": "1.5"}, nil,
			map[string]map[string]string{"x": {"a0": "1"}}},
		{"discrete EVENLY: 0.5 truncates to nothing and allocates nothing",
			xMap(Discrete, Evenly, "2", "2"), map[string]string{"x": "0.5"}, nil,
			map[string]map[string]string{"x": {}}},
		{"discrete FILL does not truncate: 1.5 -> 1 + 0.5",
			xMap(Discrete, Fill, "1", "1"), map[string]string{"x": "1.5"}, nil,
			map[string]map[string]string{"x": {"a0": "1", "a1": "0.5"}}},
		{"discrete FILL counts whole free units: two halves cannot hold 1",
			xMap(Discrete, Fill, "0.5", "0.5"), map[string]string{"x": "1"}, ErrInsufficientResource, nil},
		{"fractional EVENLY under-allocates after rounding: 1.5 at quantum 0.1 on 8 x 1.0 -> 1.4",
			withQuantum(xMap(Fractional, Evenly, repeatString("1.0", 8)...), "0.1"), map[string]string{"x": "1.5"}, nil,
			map[string]map[string]string{"x": {"a6": "0.7", "a7": "0.7"}}},
		{"fractional FILL gives exact totals: 1.5 at quantum 0.1 -> 1.0 + 0.5",
			withQuantum(xMap(Fractional, Fill, repeatString("1.0", 8)...), "0.1"), map[string]string{"x": "1.5"}, nil,
			map[string]map[string]string{"x": {"a0": "1.0", "a1": "0.5"}}},
		{"two different MIG profiles are exclusive with each other too",
			MapSpec{Kind: "cuda", ExclusiveSlots: []string{"cuda.device:*-mig", "cuda.device"}, Devices: []Device{
				{ID: "m0", Slot: "cuda.device:1g.5gb-mig", SlotKind: SlotUnique, Capacity: dec("1")},
				{ID: "m1", Slot: "cuda.device:3g.20gb-mig", SlotKind: SlotUnique, Capacity: dec("1")},
			}}, map[string]string{"cuda.device:1g.5gb-mig": "1", "cuda.device:3g.20gb-mig": "1"}, ErrInvalidCombination, nil},
		{"a literal exclusive entry without '*' matches only itself",
			MapSpec{Kind: "cuda", ExclusiveSlots: []string{"cuda.device?", "cuda.shares"}, Devices: []Device{
				{ID: "d0", Slot: "cuda.devices", Capacity: dec("1")},
				{ID: "s0", Slot: "cuda.shares", Capacity: dec("1")},
			}}, map[string]string{"cuda.devices": "1", "cuda.shares": "1"}, nil,
			map[string]map[string]string{"cuda.devices": {"d0": "1"}, "cuda.shares": {"s0": "1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			m := mustMap(t, tc.spec)
			res, err := m.Allocate(slotsOf(tc.request), nil)
			checkErr(t, err, tc.wantErr)
			if tc.wantResult != nil {
				checkResult(t, res, tc.wantResult)
			}
		})
	}
}

// TestDeliberateDifferences pins where this engine refuses what upstream
// would get wrong.
func TestDeliberateDifferences(t *testing.T) {
	t.Run("fractional EVENLY with affinity order: upstream gives the 0.3 device 0.6; we refuse rather than over-commit", func(t *testing.T) {
		m := mustMap(t, MapSpec{Kind: "cuda", Type: Fractional, Devices: []Device{
			{ID: "small", Slot: "cuda.shares", Capacity: dec("0.3"), NUMANode: 0},
			{ID: "big", Slot: "cuda.shares", Capacity: dec("1.0"), NUMANode: 1},
		}})
		hint := &AffinityHint{Map: affinity.Build(affinityDevicesOf(m)), Policy: affinity.Interleaved}
		_, err := m.Allocate(Slots{"cuda.shares": dec("1.2")}, hint)
		checkErr(t, err, ErrInsufficientResource)
		checkState(t, m, nil, true)
	})
	t.Run("fractional EVENLY checks unique slots too (upstream only checks them in FILL)", func(t *testing.T) {
		m := mustMap(t, MapSpec{Kind: "cuda", Type: Fractional, Devices: []Device{
			{ID: "m0", Slot: "cuda.device:1g.5gb-mig", SlotKind: SlotUnique, Capacity: dec("1")}}})
		_, err := m.Allocate(Slots{"cuda.device:1g.5gb-mig": dec("0.5")}, nil)
		checkErr(t, err, ErrInvalidArgument)
	})
	t.Run("negative requests are refused (upstream drops them silently)", func(t *testing.T) {
		m := mustMap(t, xMap(Discrete, Fill, "1"))
		_, err := m.Allocate(Slots{"x": dec("-1")}, nil)
		checkErr(t, err, ErrInvalidArgument)
	})
	t.Run("discrete EVENLY with only fractions of units free stops at once (upstream spins 100 rounds)", func(t *testing.T) {
		m := mustMap(t, xMap(Discrete, Evenly, "1.5", "1.5"))
		_, err := m.Allocate(Slots{"x": dec("2")}, nil)
		checkErr(t, err, nil)
		_, err = m.Allocate(Slots{"x": dec("1")}, nil)
		checkErr(t, err, ErrInsufficientResource)
	})
	t.Run("an unknown slot without a hint is unsupported (upstream: insufficient)", func(t *testing.T) {
		m := mustMap(t, xMap(Discrete, Fill, "1"))
		_, err := m.Allocate(Slots{"x.other": dec("1")}, nil)
		checkErr(t, err, ErrUnsupportedSlot)
	})
	t.Run("error messages name the slot and the amounts", func(t *testing.T) {
		m := mustMap(t, xMap(Discrete, Fill, "2", "2"))
		_, err := m.Allocate(Slots{"x": dec("5")}, nil)
		var re *ResourceError
		if !errors.As(err, &re) {
			t.Fatalf("error %v is not a ResourceError", err)
		}
		if got, want := err.Error(), "insufficient resource: device x: slot x: requested 5, allocatable 4"; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
	})
}
