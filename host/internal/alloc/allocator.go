package alloc

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

// DefaultAllocationOrder is upstream's allocation-order default: accelerators
// first so that cpu and mem follow their NUMA nodes.
func DefaultAllocationOrder() []string {
	return []string{"cuda", "rocm", "tpu", "cpu", "mem"}
}

// Config holds the agent-level allocation settings.
type Config struct {
	// AllocationOrder lists device kinds in allocation order; nil means
	// DefaultAllocationOrder. Every map's kind must appear in it.
	AllocationOrder []string
	// AffinityPolicy applies to the first device kind of each allocation.
	// The zero value is upstream's default, interleaved.
	AffinityPolicy affinity.Policy
}

// Allocator owns one DeviceMap per device kind and the affinity map over
// all their devices. All methods are safe for concurrent use.
type Allocator struct {
	mu       sync.Mutex
	maps     []*DeviceMap // in allocation order
	byKind   map[string]*DeviceMap
	affinity *affinity.Map
	policy   affinity.Policy
}

// NewAllocator builds the maps. A map kind missing from the allocation
// order is a configuration error (upstream fails at the first allocation
// with a ValueError; failing at start-up says the same thing earlier).
func NewAllocator(cfg Config, specs []MapSpec) (*Allocator, error) {
	order := cfg.AllocationOrder
	if order == nil {
		order = DefaultAllocationOrder()
	}
	switch cfg.AffinityPolicy {
	case affinity.Interleaved, affinity.PreferSingleNode:
	default:
		return nil, configError("unknown affinity policy %d", cfg.AffinityPolicy)
	}
	a := &Allocator{byKind: make(map[string]*DeviceMap, len(specs)), policy: cfg.AffinityPolicy}
	var affinityDevices []affinity.Device
	for _, spec := range specs {
		if _, dup := a.byKind[spec.Kind]; dup {
			return nil, configError("two maps for device kind %q", spec.Kind)
		}
		if !slices.Contains(order, spec.Kind) {
			return nil, configError("device kind %q is missing from allocation-order %v", spec.Kind, order)
		}
		m, err := NewDeviceMap(spec)
		if err != nil {
			return nil, err
		}
		m.sharedRequest = true
		a.byKind[spec.Kind] = m
		for i := range m.devices {
			affinityDevices = append(affinityDevices, m.affinityDevice(i))
		}
	}
	for _, kind := range order {
		if m := a.byKind[kind]; m != nil && !slices.Contains(a.maps, m) {
			a.maps = append(a.maps, m)
		}
	}
	a.affinity = affinity.Build(affinityDevices)
	return a, nil
}

// Allocate reserves the request for one kernel across every device kind,
// in allocation order, carrying the NUMA hint from one kind to the next. It
// is all-or-nothing: on any error every map is as before.
//
// Slots no map provides are refused with ErrUnsupportedSlot unless their
// amount is zero (upstream accepts unknown zero slots). Every device kind
// named in the request appears in the result, possibly empty.
func (a *Allocator) Allocate(req Slots) (Allocation, error) {
	return a.AllocateWith(req, AllocateOptions{})
}

// AllocateOptions are one request's allocation choices.
type AllocateOptions struct {
	// DenyFragmentation is resource_opts.allow_fractional_resource_fragmentation
	// = false: fractional slots go through upstream's fragmentation guard
	// even on maps that allow fragmentation (MapSpec.DenyFragmentation
	// turns it on for every request).
	DenyFragmentation bool
}

// AllocateWith is Allocate with the request's own choices.
func (a *Allocator) AllocateWith(req Slots, opts AllocateOptions) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()

	requested := make(map[*DeviceMap]bool, len(a.maps))
	for slot, amount := range req {
		if amount.Sign() < 0 {
			return nil, newSlotError(ErrInvalidArgument, slot, amount, "negative amount")
		}
		m := a.byKind[DeviceKindOf(slot)]
		if m == nil || m.byName[slot] == nil {
			if amount.IsZero() {
				continue
			}
			return nil, newSlotError(ErrUnsupportedSlot, slot, amount, "no device provides it")
		}
		requested[m] = true
	}

	result := make(Allocation, len(requested))
	hint := &AffinityHint{Map: a.affinity, Policy: a.policy}
	var begun []*DeviceMap
	rollback := func() {
		for _, m := range begun {
			m.rollback()
		}
	}
	for _, m := range a.maps {
		if !requested[m] {
			continue
		}
		m.begin()
		begun = append(begun, m)
		da, hintDevices, err := m.allocate(req, hint, opts.DenyFragmentation)
		if err != nil {
			rollback()
			return nil, fmt.Errorf("allocating %s: %w", m.kind, withDeviceKind(err, m.kind))
		}
		result[m.kind] = da
		hint.Devices = make([]affinity.Device, 0, len(hintDevices))
		for _, i := range hintDevices {
			hint.Devices = append(hint.Devices, m.affinityDevice(i))
		}
	}
	for _, m := range begun {
		m.commit()
	}
	return result, nil
}

// Free returns a kernel's allocation (upstream uses free only to roll back
// a failed create or start). It refuses, changing nothing, if any entry is
// unknown or would take a device below zero.
func (a *Allocator) Free(alloc Allocation) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.check(alloc, true); err != nil {
		return fmt.Errorf("free: %w", err)
	}
	for kind, da := range alloc {
		if m := a.byKind[kind]; m != nil {
			m.add(da, true)
		}
	}
	return nil
}

// Apply adds the allocation a running container records, without capacity
// checks (see DeviceMap.Apply). It refuses, changing nothing, if any entry
// is unknown or negative.
func (a *Allocator) Apply(alloc Allocation) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applyLocked(alloc)
}

func (a *Allocator) applyLocked(alloc Allocation) error {
	if err := a.check(alloc, false); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	for kind, da := range alloc {
		if m := a.byKind[kind]; m != nil {
			m.add(da, false)
		}
	}
	return nil
}

// Rebuild clears every map and applies the allocations of the live
// containers (upstream's reconstruct_resource_usage, run after an agent
// restart and after each kernel cleanup). Allocations that fail validation
// are skipped; their errors come back joined, and everything else is
// applied.
func (a *Allocator) Rebuild(allocs []Allocation) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.maps {
		m.Clear()
	}
	var errs []error
	for k, alloc := range allocs {
		if err := a.applyLocked(alloc); err != nil {
			errs = append(errs, fmt.Errorf("allocation %d: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

func (a *Allocator) check(alloc Allocation, subtract bool) error {
	for kind, da := range alloc {
		m := a.byKind[kind]
		if m == nil {
			if len(da) == 0 {
				continue
			}
			return fmt.Errorf("%w: no device kind %q", ErrUnsupportedSlot, kind)
		}
		if err := m.checkEntries(da, subtract); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot copies the state of every map, kinds in allocation order.
func (a *Allocator) Snapshot() []SlotUsage {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []SlotUsage
	for _, m := range a.maps {
		out = append(out, m.Snapshot()...)
	}
	return out
}

// SlotTotal is the summed capacity of one slot, the input of slot
// accounting.
type SlotTotal struct {
	Slot       string
	DeviceKind string
	MapType    MapType
	Total      decimal.Decimal
}

// SlotTotals sums the device capacities per slot (upstream's
// _calculate_total_slots), kinds in allocation order.
func (a *Allocator) SlotTotals() []SlotTotal {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []SlotTotal
	for _, m := range a.maps {
		for _, s := range m.slots {
			out = append(out, SlotTotal{Slot: s.name, DeviceKind: m.kind, MapType: m.typ, Total: s.capacity})
		}
	}
	return out
}
