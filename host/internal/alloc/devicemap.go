package alloc

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

// DeviceMap is the allocation state of one device kind (one plugin). It is
// not safe for concurrent use; the Allocator serialises access.
type DeviceMap struct {
	kind              string
	typ               MapType
	strategy          Strategy
	quantum           decimal.Decimal
	minMemory         decimal.Decimal
	denyFragmentation bool
	exclusive         []string
	places            int32           // canonical decimals of a fractional map
	minMemoryQ        decimal.Decimal // min_memory at 0.01, canonical

	devices []Device
	index   map[string]int // device ID -> position in devices
	slots   []*slotState   // in first-appearance order
	byName  map[string]*slotState

	// Per device, indexed like devices. free and freeTrunc cache
	// capacity-allocated and its int() so orderings and the discrete EVENLY
	// loop do no decimal arithmetic per device.
	allocated []decimal.Decimal
	free      []decimal.Decimal
	freeTrunc []int64
	slotOf    []int // index into slots
	numaPos   []int // index into the device's slot's numaNodes

	journaling bool
	journal    []undoEntry
	// sharedRequest is set when an Allocator owns the map and hands it the
	// request of every kind.
	sharedRequest bool

	// Scratch space reused by every allocation (the map is single-threaded)
	// so that a 128-core allocation does not allocate per device.
	orderBuf, groupBuf []int
	takenBuf           []int64
	roomBuf            []bool
	decBuf, prefixBuf  []decimal.Decimal
	counts             []decimal.Decimal // counts[k] is k, for window arithmetic
}

type slotState struct {
	name     string
	kind     SlotKind
	devices  []int // positions in map order
	capacity decimal.Decimal
	// numaAllocated sums the allocations per NUMA node. Upstream sums per
	// call; caching keeps a 128-core allocation cheap and the sums are exact
	// either way.
	numaNodes     []int
	numaDevices   [][]int
	numaAllocated []decimal.Decimal
}

type undoEntry struct {
	device   int
	previous decimal.Decimal
}

// NewDeviceMap validates the spec and builds an empty map.
func NewDeviceMap(spec MapSpec) (*DeviceMap, error) {
	if spec.Kind == "" || strings.Contains(spec.Kind, ".") {
		return nil, configError("invalid device kind %q", spec.Kind)
	}
	m := &DeviceMap{
		kind:              spec.Kind,
		typ:               spec.Type,
		strategy:          spec.Strategy,
		quantum:           spec.Quantum,
		minMemory:         spec.MinMemory,
		denyFragmentation: spec.DenyFragmentation,
		exclusive:         slices.Clone(spec.ExclusiveSlots),
		devices:           slices.Clone(spec.Devices),
		index:             make(map[string]int, len(spec.Devices)),
		byName:            make(map[string]*slotState),
	}
	switch spec.Type {
	case Discrete, Fractional:
	default:
		return nil, configError("%s: unknown map type %d", spec.Kind, spec.Type)
	}
	switch spec.Strategy {
	case Evenly, Fill:
	default:
		return nil, configError("%s: unknown strategy %d", spec.Kind, spec.Strategy)
	}
	if m.quantum.IsZero() {
		m.quantum = defaultQuantum
	}
	if m.quantum.Sign() < 0 {
		return nil, configError("%s: negative quantum %s", spec.Kind, m.quantum)
	}
	if m.minMemory.IsZero() {
		m.minMemory = defaultMinMemory
	}
	for _, p := range m.exclusive {
		if _, err := path.Match(p, ""); err != nil {
			return nil, configError("%s: bad exclusive slot pattern %q: %v", spec.Kind, p, err)
		}
	}
	n := len(m.devices)
	m.allocated = make([]decimal.Decimal, n)
	m.free = make([]decimal.Decimal, n)
	m.freeTrunc = make([]int64, n)
	m.slotOf = make([]int, n)
	m.numaPos = make([]int, n)
	for i, d := range m.devices {
		if d.ID == "" {
			return nil, configError("%s: device %d has an empty ID", spec.Kind, i)
		}
		if _, dup := m.index[d.ID]; dup {
			return nil, configError("%s: duplicate device ID %q", spec.Kind, d.ID)
		}
		if d.Slot != spec.Kind && !strings.HasPrefix(d.Slot, spec.Kind+".") {
			return nil, configError("%s: slot %q of device %q is not prefixed with %q", spec.Kind, d.Slot, d.ID, spec.Kind+".")
		}
		if d.Capacity.Sign() < 0 {
			return nil, configError("%s: device %q has negative capacity %s", spec.Kind, d.ID, d.Capacity)
		}
		m.index[d.ID] = i
		s := m.byName[d.Slot]
		if s == nil {
			s = &slotState{name: d.Slot, kind: d.SlotKind}
			m.byName[d.Slot] = s
			m.slots = append(m.slots, s)
		} else if s.kind != d.SlotKind {
			return nil, configError("%s: slot %q has devices of kinds %s and %s", spec.Kind, d.Slot, s.kind, d.SlotKind)
		}
		m.slotOf[i] = slices.Index(m.slots, s)
		s.devices = append(s.devices, i)
		s.capacity = s.capacity.Add(d.Capacity)
		pos := slices.Index(s.numaNodes, d.NUMANode)
		if pos < 0 {
			s.numaNodes = append(s.numaNodes, d.NUMANode)
			s.numaDevices = append(s.numaDevices, nil)
			s.numaAllocated = append(s.numaAllocated, decZero)
			pos = len(s.numaNodes) - 1
		}
		s.numaDevices[pos] = append(s.numaDevices[pos], i)
		m.numaPos[i] = pos
	}
	if m.typ == Fractional {
		m.canonicalize()
	}
	m.orderBuf = make([]int, 0, n)
	m.groupBuf = make([]int, 0, n)
	m.takenBuf = make([]int64, n)
	m.roomBuf = make([]bool, n)
	m.decBuf = make([]decimal.Decimal, 3*n)
	m.counts = make([]decimal.Decimal, n+1)
	for k := range m.counts {
		m.counts[k] = decimal.NewFromInt(int64(k))
	}
	m.prefixBuf = make([]decimal.Decimal, n+1)
	m.Clear()
	return m, nil
}

// canonicalize gives a fractional map's capacities one exponent, fine
// enough for the quantum and two decimals, so that comparisons and sums on
// the hot path need no rescaling. Values are unchanged ("1" becomes "1.00").
func (m *DeviceMap) canonicalize() {
	places := max(hundredthPlaces, -m.quantum.Exponent())
	for _, d := range m.devices {
		places = max(places, -d.Capacity.Exponent())
	}
	m.places = places
	for i := range m.devices {
		m.devices[i].Capacity = m.devices[i].Capacity.Round(places)
	}
	for _, s := range m.slots {
		s.capacity = s.capacity.Round(places)
	}
	m.minMemoryQ = quantize2(m.minMemory).Round(places)
}

// canonical rounds a request to the map's exponent when that is exact.
func (m *DeviceMap) canonical(x decimal.Decimal) decimal.Decimal {
	if m.places > 0 && -x.Exponent() < m.places {
		return x.Round(m.places)
	}
	return x
}

// Kind returns the device kind (plugin key).
func (m *DeviceMap) Kind() string { return m.kind }

// Type returns the map type.
func (m *DeviceMap) Type() MapType { return m.typ }

// Clear sets every allocation back to zero.
func (m *DeviceMap) Clear() {
	for i, d := range m.devices {
		m.allocated[i] = decZero
		m.free[i] = d.Capacity
		m.freeTrunc[i] = truncInt(d.Capacity)
	}
	for _, s := range m.slots {
		for j := range s.numaAllocated {
			s.numaAllocated[j] = decZero
		}
	}
	m.journal = m.journal[:0]
}

// setAllocated is the only writer of a device's allocation; it keeps the
// caches in step and journals the old value while a transaction is open.
func (m *DeviceMap) setAllocated(i int, v decimal.Decimal) {
	old := m.allocated[i]
	if m.journaling {
		m.journal = append(m.journal, undoEntry{device: i, previous: old})
	}
	if v.Equal(old) {
		return
	}
	s := m.slots[m.slotOf[i]]
	s.numaAllocated[m.numaPos[i]] = s.numaAllocated[m.numaPos[i]].Add(v.Sub(old))
	if v.IsZero() {
		// Keep idle devices in their canonical form so comparisons between
		// them need no rescaling.
		m.allocated[i], m.free[i] = decZero, m.devices[i].Capacity
	} else {
		m.allocated[i], m.free[i] = v, m.devices[i].Capacity.Sub(v)
	}
	m.freeTrunc[i] = truncInt(m.free[i])
}

// addAllocated adds (or with subtract, removes) amount on device i. It is
// the hot path of allocate and free, so it skips the arithmetic an idle
// device or a device returning to idle does not need.
func (m *DeviceMap) addAllocated(i int, amount decimal.Decimal, subtract bool) {
	old := m.allocated[i]
	var v decimal.Decimal
	switch {
	case amount.IsZero():
		return
	case subtract && old.Equal(amount):
		v = decZero
	case subtract:
		v = old.Sub(amount)
	case old.IsZero():
		v = amount
	default:
		v = old.Add(amount)
	}
	if m.journaling {
		m.journal = append(m.journal, undoEntry{device: i, previous: old})
	}
	s := m.slots[m.slotOf[i]]
	if subtract {
		s.numaAllocated[m.numaPos[i]] = s.numaAllocated[m.numaPos[i]].Sub(amount)
	} else {
		s.numaAllocated[m.numaPos[i]] = s.numaAllocated[m.numaPos[i]].Add(amount)
	}
	if v.IsZero() {
		m.allocated[i], m.free[i] = decZero, m.devices[i].Capacity
	} else {
		m.allocated[i], m.free[i] = v, m.devices[i].Capacity.Sub(v)
	}
	m.freeTrunc[i] = truncInt(m.free[i])
}

// allocated sums the slot over its NUMA nodes.
func (s *slotState) allocatedSum() decimal.Decimal {
	sum := s.numaAllocated[0]
	for _, v := range s.numaAllocated[1:] {
		sum = sum.Add(v)
	}
	return sum
}

// freeSum is the slot's total free capacity.
func (s *slotState) freeSum() decimal.Decimal {
	return s.capacity.Sub(s.allocatedSum())
}

func (m *DeviceMap) begin() {
	m.journaling = true
	m.journal = m.journal[:0]
}

func (m *DeviceMap) commit() {
	m.journaling = false
	m.journal = m.journal[:0]
}

func (m *DeviceMap) rollback() {
	m.journaling = false
	for k := len(m.journal) - 1; k >= 0; k-- {
		e := m.journal[k]
		m.setAllocated(e.device, e.previous)
	}
	m.journal = m.journal[:0]
}

// isExclusive is upstream's check_exclusive: two different slots conflict
// when both are listed, exactly or through a pattern containing '*'.
func (m *DeviceMap) isExclusive(a, b string) bool {
	if len(m.exclusive) == 0 || a == b {
		return false
	}
	aIn, bIn := slices.Contains(m.exclusive, a), slices.Contains(m.exclusive, b)
	if aIn && bIn {
		return true
	}
	for _, p := range m.exclusive {
		if !strings.Contains(p, "*") {
			continue
		}
		if !aIn {
			aIn, _ = path.Match(p, a)
		}
		if !bIn {
			bIn, _ = path.Match(p, b)
		}
	}
	return aIn && bIn
}

// Allocate allocates the request on this map alone. Zero amounts are
// ignored; slot names are processed in sorted order. A non-nil hint is
// updated in place with the devices of each allocated slot, as upstream
// does, so the same hint can be passed to the next map. On error nothing
// changes.
func (m *DeviceMap) Allocate(req Slots, hint *AffinityHint) (DeviceAllocation, error) {
	m.begin()
	da, _, err := m.allocate(req, hint, false)
	if err != nil {
		m.rollback()
		return nil, withDeviceKind(err, m.kind)
	}
	m.commit()
	return da, nil
}

// allocation is one device's share of one slot, before it becomes a
// DeviceAllocation entry.
type allocation struct {
	device int
	amount decimal.Decimal
}

// allocate runs upstream's allocate() for this map. It changes the state
// and returns the devices to carry as the next affinity hint (every device
// in the result, as resources.allocate does).
func (m *DeviceMap) allocate(req Slots, hint *AffinityHint, denyFragmentation bool) (DeviceAllocation, []int, error) {
	names := make([]string, 0, len(req))
	for name, amount := range req {
		if m.foreign(name) {
			continue
		}
		if amount.Sign() < 0 {
			return nil, nil, newSlotError(ErrInvalidArgument, name, amount, "negative amount")
		}
		if amount.Sign() > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, a := range names {
		for _, b := range names {
			if m.isExclusive(a, b) {
				return nil, nil, &ResourceError{Kind: ErrInvalidCombination,
					Detail: fmt.Sprintf("slots %s and %s cannot be allocated at the same time", a, b)}
			}
		}
	}
	for _, name := range names {
		// Upstream's fractional EVENLY path skips this check; we apply it
		// to every map so a unique slot never gets a fraction.
		if s := m.byName[name]; s != nil && s.kind == SlotUnique && !req[name].Equal(decOne) {
			return nil, nil, newSlotError(ErrInvalidArgument, name, req[name], "a unique slot takes exactly 1")
		}
	}

	result := make(DeviceAllocation, len(names))
	hintDevices := make([]int, 0, 8)
	for k, name := range names {
		requested := req[name]
		if hint != nil && !hint.Map.HasKind(DeviceKindOf(name)) {
			return nil, nil, configError("no device of kind %q in the affinity map for slot %s", DeviceKindOf(name), name)
		}
		s := m.byName[name]
		if s == nil {
			return nil, nil, newSlotError(ErrUnsupportedSlot, name, requested, "no device of this map provides it")
		}
		order := m.orderDevices(s, hint)
		var (
			shares []allocation
			err    error
		)
		if m.typ == Discrete {
			shares, err = m.allocateDiscrete(s, requested, order)
		} else {
			shares, err = m.allocateFraction(s, requested, order, m.denyFragmentation || denyFragmentation)
		}
		if err != nil {
			return nil, nil, err
		}
		// The Allocator sets the hint for the next kind itself; inside the
		// map the hint matters only for a following slot.
		if hint != nil && (!m.sharedRequest || k < len(names)-1) {
			hint.Devices = hint.Devices[:0:0]
			for _, sh := range shares {
				if !sh.amount.IsZero() {
					hint.Devices = append(hint.Devices, m.affinityDevice(sh.device))
				}
			}
		}
		if m.typ == Fractional {
			if shares, err = m.roundToQuantum(s, requested, shares); err != nil {
				return nil, nil, err
			}
		}
		per := make(map[string]decimal.Decimal, len(shares))
		for _, sh := range shares {
			per[m.devices[sh.device].ID] = sh.amount
			hintDevices = append(hintDevices, sh.device)
		}
		result[name] = per
	}
	return result, hintDevices, nil
}

// foreign reports whether a slot belongs to another device kind. The
// Allocator passes the whole request to every map; a standalone map treats
// every slot as its own so that unknown slots are reported.
func (m *DeviceMap) foreign(slot string) bool {
	return m.sharedRequest && DeviceKindOf(slot) != m.kind
}

func (m *DeviceMap) affinityDevice(i int) affinity.Device {
	return affinity.Device{Kind: m.kind, ID: m.devices[i].ID, NUMANode: m.devices[i].NUMANode}
}

// applyShares adds the shares to the devices.
func (m *DeviceMap) applyShares(shares []allocation) {
	for _, sh := range shares {
		m.addAllocated(sh.device, sh.amount, false)
	}
}

// checkEntries validates a DeviceAllocation against this map: known slots
// and devices, non-negative amounts, and with subtract set, no device
// going below zero.
func (m *DeviceMap) checkEntries(da DeviceAllocation, subtract bool) error {
	for slot, per := range da {
		s := m.byName[slot]
		if s == nil && len(per) > 0 {
			return fmt.Errorf("%w: slot %s is not provided by device kind %s", ErrUnsupportedSlot, slot, m.kind)
		}
		for id, amount := range per {
			i, ok := m.index[id]
			if !ok || m.devices[i].Slot != slot {
				return fmt.Errorf("%w: slot %s has no device %q in device kind %s", ErrUnsupportedSlot, slot, id, m.kind)
			}
			if amount.Sign() < 0 {
				return fmt.Errorf("%w: slot %s device %q: negative amount %s", ErrInvalidArgument, slot, id, amount)
			}
			if subtract && m.allocated[i].LessThan(amount) {
				return fmt.Errorf("%w: slot %s device %q: freeing %s but only %s is allocated",
					ErrInvalidArgument, slot, id, amount, m.allocated[i])
			}
		}
	}
	return nil
}

// Apply adds an allocation recorded elsewhere (a running container's
// resource.txt). Like upstream's apply_allocation it does not check
// capacity: a restored container holds what it holds. It refuses unknown
// slots or devices and negative amounts, and then changes nothing.
func (m *DeviceMap) Apply(da DeviceAllocation) error {
	if err := m.checkEntries(da, false); err != nil {
		return err
	}
	m.add(da, false)
	return nil
}

// add applies a checked allocation, or with subtract, frees it.
func (m *DeviceMap) add(da DeviceAllocation, subtract bool) {
	for _, per := range da {
		for id, amount := range per {
			m.addAllocated(m.index[id], amount, subtract)
		}
	}
}

// Free subtracts an allocation. Unlike upstream it refuses (changing
// nothing) when a device would go below zero.
func (m *DeviceMap) Free(da DeviceAllocation) error {
	if err := m.checkEntries(da, true); err != nil {
		return err
	}
	m.add(da, true)
	return nil
}

// DeviceUsage is one device's line in a snapshot.
type DeviceUsage struct {
	ID        string
	NUMANode  int
	Capacity  decimal.Decimal
	Allocated decimal.Decimal
}

// SlotUsage is one slot's devices in a snapshot.
type SlotUsage struct {
	DeviceKind string
	Slot       string
	SlotKind   SlotKind
	MapType    MapType
	Capacity   decimal.Decimal // sum over the devices
	Allocated  decimal.Decimal // sum over the devices
	Devices    []DeviceUsage   // in registration order
}

// Snapshot copies the current state, slots in first-appearance order.
func (m *DeviceMap) Snapshot() []SlotUsage {
	out := make([]SlotUsage, 0, len(m.slots))
	for _, s := range m.slots {
		u := SlotUsage{DeviceKind: m.kind, Slot: s.name, SlotKind: s.kind, MapType: m.typ,
			Capacity: s.capacity, Allocated: s.allocatedSum(), Devices: make([]DeviceUsage, 0, len(s.devices))}
		for _, i := range s.devices {
			d := m.devices[i]
			u.Devices = append(u.Devices, DeviceUsage{ID: d.ID, NUMANode: d.NUMANode, Capacity: d.Capacity, Allocated: m.allocated[i]})
		}
		out = append(out, u)
	}
	return out
}
