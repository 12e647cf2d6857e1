// Package alloc decides which devices a kernel gets. It reproduces upstream
// Backend.AI's allocation maps (agent/alloc_map.py), the NUMA affinity hint
// (agent/affinity_map.py) and the transactional allocate of
// agent/resources.py, with exact decimal arithmetic.
//
// A DeviceMap holds the devices of one plugin (device kind) and is not safe
// for concurrent use; an Allocator owns one DeviceMap per kind, serialises
// every call with a mutex and makes each allocation all-or-nothing.
package alloc

import (
	"fmt"

	"github.com/shopspring/decimal"
)

// SlotKind is upstream's SlotTypes.
type SlotKind int

const (
	SlotCount   SlotKind = iota // cpu, *.device, *.shares
	SlotBytes                   // mem
	SlotUnique                  // MIG-like slots: the amount must be exactly 1
	SlotUnified                 // attached to every kernel; allocated like count
)

func (k SlotKind) String() string {
	switch k {
	case SlotCount:
		return "count"
	case SlotBytes:
		return "bytes"
	case SlotUnique:
		return "unique"
	case SlotUnified:
		return "unified"
	default:
		return fmt.Sprintf("SlotKind(%d)", int(k))
	}
}

// ParseSlotKind accepts upstream's slot type names.
func ParseSlotKind(s string) (SlotKind, error) {
	switch s {
	case "count":
		return SlotCount, nil
	case "bytes":
		return SlotBytes, nil
	case "unique":
		return SlotUnique, nil
	case "unified":
		return SlotUnified, nil
	default:
		return 0, fmt.Errorf("%w: unknown slot kind %q", ErrConfiguration, s)
	}
}

// MapType selects the allocation map flavour.
type MapType int

const (
	// Discrete hands out whole units (upstream's DiscretePropertyAllocMap).
	Discrete MapType = iota
	// Fractional hands out quantum-sized fractions (upstream's FractionAllocMap).
	Fractional
)

func (t MapType) String() string {
	switch t {
	case Discrete:
		return "discrete"
	case Fractional:
		return "fractional"
	default:
		return fmt.Sprintf("MapType(%d)", int(t))
	}
}

// ParseMapType accepts "discrete" and "fractional".
func ParseMapType(s string) (MapType, error) {
	switch s {
	case "discrete":
		return Discrete, nil
	case "fractional":
		return Fractional, nil
	default:
		return 0, fmt.Errorf("%w: unknown map type %q", ErrConfiguration, s)
	}
}

// Strategy is upstream's AllocationStrategy. The zero value is Evenly, the
// upstream default for both map types.
type Strategy int

const (
	Evenly Strategy = iota
	Fill
)

func (s Strategy) String() string {
	switch s {
	case Evenly:
		return "EVENLY"
	case Fill:
		return "FILL"
	default:
		return fmt.Sprintf("Strategy(%d)", int(s))
	}
}

// ParseStrategy accepts "FILL" and "EVENLY" in any case.
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "EVENLY", "evenly":
		return Evenly, nil
	case "FILL", "fill":
		return Fill, nil
	default:
		return 0, fmt.Errorf("%w: unknown allocation strategy %q", ErrConfiguration, s)
	}
}

// Device is one allocatable device. Each device provides exactly one slot.
type Device struct {
	ID       string
	Slot     string // e.g. "cuda.device"; must be the map's kind or start with "<kind>."
	SlotKind SlotKind
	Capacity decimal.Decimal
	// NUMANode is the device's NUMA node, or affinity.UnknownNUMANode (-1).
	NUMANode int
}

// MapSpec describes one plugin's allocation map and its devices.
type MapSpec struct {
	Kind     string // plugin key: "cpu", "mem", "cuda", ...
	Type     MapType
	Strategy Strategy
	// Quantum is the fractional map's unit; zero means upstream's 0.01.
	Quantum decimal.Decimal
	// MinMemory makes the fractional EVENLY strategy ignore devices with less
	// free capacity; zero means upstream's 0.01.
	MinMemory decimal.Decimal
	// DenyFragmentation turns on upstream's fragmentation guard
	// (allow_fractional_resource_fragmentation = false). The zero value keeps
	// upstream's default of allowing fragmentation.
	DenyFragmentation bool
	// ExclusiveSlots are shell patterns (path.Match); two different requested
	// slots that both match are refused together.
	ExclusiveSlots []string
	Devices        []Device
}

// Slots is a request or a capacity per slot name.
type Slots map[string]decimal.Decimal

// DeviceAllocation is what one device kind gives to one kernel:
// slot name -> device ID -> amount.
type DeviceAllocation map[string]map[string]decimal.Decimal

// Allocation is one kernel's allocation over every device kind:
// device kind -> DeviceAllocation (upstream's resource_spec.allocations).
type Allocation map[string]DeviceAllocation

// Clone returns a deep copy.
func (a Allocation) Clone() Allocation {
	out := make(Allocation, len(a))
	for kind, da := range a {
		out[kind] = da.Clone()
	}
	return out
}

// Clone returns a deep copy.
func (da DeviceAllocation) Clone() DeviceAllocation {
	out := make(DeviceAllocation, len(da))
	for slot, per := range da {
		cp := make(map[string]decimal.Decimal, len(per))
		for id, v := range per {
			cp[id] = v
		}
		out[slot] = cp
	}
	return out
}

// DeviceKindOf returns the device kind (plugin key) a slot belongs to: the
// part before the first dot.
func DeviceKindOf(slot string) string {
	for i := 0; i < len(slot); i++ {
		if slot[i] == '.' {
			return slot[:i]
		}
	}
	return slot
}
