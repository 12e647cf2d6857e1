// Package accounting computes the resource slots an agent reports to the
// manager: reservations for the host, memory alignment, and the partition
// of one host between several agents (upstream's ResourceAllocator in
// agent/resources.py). The allocation maps always keep full device
// capacities; these numbers only shape what the manager schedules.
package accounting

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
)

var (
	// ErrInvalidConfig is upstream's InvalidResourceConfigError: a
	// reservation larger than the total, a missing manual allocation.
	ErrInvalidConfig = errors.New("invalid resource configuration")
	// ErrOverAllocated is upstream's ResourceOverAllocatedError: manual
	// allocations of all agents exceed the host.
	ErrOverAllocated = errors.New("resource over-allocated across agents")
	// ErrInitialization is upstream's InitializationError: no usable cpu or
	// memory left to report.
	ErrInitialization = errors.New("agent initialization error")
)

// Reservation is what the host keeps for itself (reserved-cpu,
// reserved-mem, reserved-disk).
type Reservation struct {
	CPU  decimal.Decimal
	Mem  decimal.Decimal // bytes
	Disk decimal.Decimal // bytes
}

// DefaultReservation is upstream's default: 1 core, 1 GiB, 8 GiB.
func DefaultReservation() Reservation {
	return Reservation{
		CPU:  decimal.NewFromInt(1),
		Mem:  decimal.NewFromInt(1 << 30),
		Disk: decimal.NewFromInt(8 << 30),
	}
}

func (r Reservation) forSlot(slot string) decimal.Decimal {
	switch slot {
	case "cpu":
		return r.CPU
	case "mem":
		return r.Mem
	case "disk":
		return r.Disk
	default:
		return decimal.Zero
	}
}

// Mode is allocation-mode: how several agents on one host share it.
type Mode int

const (
	// Shared lets every agent see everything.
	Shared Mode = iota
	// AutoSplit divides every slot evenly between the agents.
	AutoSplit
	// Manual gives each agent what its configuration says.
	Manual
)

func (m Mode) String() string {
	switch m {
	case Shared:
		return "shared"
	case AutoSplit:
		return "auto-split"
	case Manual:
		return "manual"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// ParseMode accepts "shared", "auto-split" and "manual" (any case, '_' or '-').
func ParseMode(s string) (Mode, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "shared":
		return Shared, nil
	case "auto-split":
		return AutoSplit, nil
	case "manual":
		return Manual, nil
	default:
		return 0, fmt.Errorf("%w: unknown allocation-mode %q", ErrInvalidConfig, s)
	}
}

// ManualAllocation is one agent's share in Manual mode.
type ManualAllocation struct {
	CPU     decimal.Decimal
	Mem     decimal.Decimal
	Devices map[string]decimal.Decimal // other slots, e.g. "cuda.shares"
}

// Agent is one agent on the host, in configuration order.
type Agent struct {
	ID     string
	Manual *ManualAllocation // required in Manual mode
}

// Partition is one agent's view of the host.
type Partition struct {
	AgentID string
	// Allocated is what the agent may hand out per slot.
	Allocated map[string]decimal.Decimal
	// Reserved is max(total - allocated, 0): subtract it from the scanned
	// slots before reporting them.
	Reserved map[string]decimal.Decimal
	// ScalingFactor is allocated / available per slot (1 when shared, 1/N
	// when auto-split).
	ScalingFactor map[string]decimal.Decimal
}

// AvailableTotals subtracts the reservation from the summed capacities. A
// reservation larger than its total is ErrInvalidConfig.
func AvailableTotals(totals []alloc.SlotTotal, r Reservation) (map[string]decimal.Decimal, error) {
	out := make(map[string]decimal.Decimal, len(totals))
	for _, t := range totals {
		reserved := r.forSlot(t.Slot)
		if t.Total.LessThan(reserved) {
			return nil, fmt.Errorf("%w: slot %s reserves %s, more than the total %s", ErrInvalidConfig, t.Slot, reserved, t.Total)
		}
		out[t.Slot] = t.Total.Sub(reserved)
	}
	return out, nil
}

// Split partitions the host between the agents.
//
// Auto-split divides a discrete slot with divmod (5 over 3 agents gives
// 2/2/1, the first agents taking the remainder) and a fractional one by N.
// Manual takes cpu and mem from the agent's settings and other slots from
// its Devices; a slot it does not list is ErrInvalidConfig, and the sum of
// what the agents get beyond a slot's available total is ErrOverAllocated.
func Split(totals []alloc.SlotTotal, r Reservation, mode Mode, agents []Agent) ([]Partition, error) {
	if len(agents) == 0 {
		return nil, fmt.Errorf("%w: no agents", ErrInvalidConfig)
	}
	available, err := AvailableTotals(totals, r)
	if err != nil {
		return nil, err
	}
	numAgents := decimal.NewFromInt(int64(len(agents)))
	parts := make([]Partition, len(agents))
	for idx, agent := range agents {
		p := Partition{
			AgentID:       agent.ID,
			Allocated:     make(map[string]decimal.Decimal, len(totals)),
			Reserved:      make(map[string]decimal.Decimal, len(totals)),
			ScalingFactor: make(map[string]decimal.Decimal, len(totals)),
		}
		for _, t := range totals {
			var share decimal.Decimal
			switch mode {
			case Shared:
				share = available[t.Slot]
			case AutoSplit:
				if t.MapType == alloc.Discrete {
					quo, rem := available[t.Slot].QuoRem(numAgents, 0)
					share = quo
					if decimal.NewFromInt(int64(idx)).LessThan(rem) {
						share = share.Add(decimal.NewFromInt(1))
					}
				} else {
					share = pythonDiv(available[t.Slot], numAgents)
				}
			case Manual:
				if share, err = manualShare(agent, t.Slot); err != nil {
					return nil, err
				}
			default:
				return nil, fmt.Errorf("%w: unknown allocation mode %d", ErrInvalidConfig, mode)
			}
			p.Allocated[t.Slot] = share
			p.Reserved[t.Slot] = decimal.Max(t.Total.Sub(share), decimal.Zero)
		}
		if p.ScalingFactor, err = scalingFactor(mode, numAgents, p.Allocated, available); err != nil {
			return nil, err
		}
		parts[idx] = p
	}
	if mode == Manual {
		if err := ensureNotOverAllocated(totals, available, parts); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

func manualShare(agent Agent, slot string) (decimal.Decimal, error) {
	if agent.Manual == nil {
		return decimal.Zero, fmt.Errorf("%w: agent %s: manual allocation mode without allocations", ErrInvalidConfig, agent.ID)
	}
	switch slot {
	case "cpu":
		return agent.Manual.CPU, nil
	case "mem":
		return agent.Manual.Mem, nil
	}
	v, ok := agent.Manual.Devices[slot]
	if !ok {
		return decimal.Zero, fmt.Errorf("%w: agent %s: slot %s has no manual allocation", ErrInvalidConfig, agent.ID, slot)
	}
	return v, nil
}

func scalingFactor(mode Mode, numAgents decimal.Decimal, allocated, available map[string]decimal.Decimal) (map[string]decimal.Decimal, error) {
	out := make(map[string]decimal.Decimal, len(allocated))
	if mode == Manual {
		for _, required := range []string{"cpu", "mem"} {
			if _, ok := allocated[required]; !ok {
				return nil, fmt.Errorf("%w: manual mode needs a %s slot", ErrInvalidConfig, required)
			}
		}
	}
	for slot, share := range allocated {
		switch mode {
		case Shared:
			out[slot] = decimal.NewFromInt(1)
		case AutoSplit:
			out[slot] = pythonDiv(decimal.NewFromInt(1), numAgents)
		case Manual:
			if available[slot].IsZero() {
				return nil, fmt.Errorf("%w: slot %s has nothing available to scale against", ErrInvalidConfig, slot)
			}
			out[slot] = pythonDiv(share, available[slot])
		}
	}
	return out, nil
}

// ensureNotOverAllocated sums, per slot, available - reserved over the
// agents, as upstream does, and compares it with the available total.
func ensureNotOverAllocated(totals []alloc.SlotTotal, available map[string]decimal.Decimal, parts []Partition) error {
	for _, t := range totals {
		sum := decimal.Zero
		for _, p := range parts {
			sum = sum.Add(available[t.Slot].Sub(p.Reserved[t.Slot]))
		}
		if available[t.Slot].LessThan(sum) {
			return fmt.Errorf("%w: slot %s is manually allocated %s across all agents but only %s is available",
				ErrOverAllocated, t.Slot, sum, available[t.Slot])
		}
	}
	return nil
}

// AlignMemory is upstream's align_memory: an unaligned size first grows by
// its own remainder, then loses the reservation and is floored to the
// alignment. The difference from orig is the actual reservation.
func AlignMemory(orig, reserved, align int64) (usable, actualReserved int64) {
	usable = orig
	if rem := floorMod(orig, align); rem != 0 {
		usable = orig + rem
	}
	usable -= reserved
	usable -= floorMod(usable, align)
	return usable, orig - usable
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m != 0 && (m < 0) != (b < 0) {
		m += b
	}
	return m
}

// ReportedSlots turns the scanned slots into the ones sent to the manager:
// mem through AlignMemory, every other slot as max(0, scanned - reserved).
// No usable cpu or mem left is ErrInitialization.
func ReportedSlots(scanned, reserved map[string]decimal.Decimal, memAlign int64) (map[string]decimal.Decimal, error) {
	if memAlign <= 0 {
		return nil, fmt.Errorf("%w: memory-align-size must be positive, got %d", ErrInvalidConfig, memAlign)
	}
	out := make(map[string]decimal.Decimal, len(scanned))
	for slot, capacity := range scanned {
		if slot == "mem" {
			usable, _ := AlignMemory(capacity.IntPart(), reserved[slot].IntPart(), memAlign)
			out[slot] = decimal.NewFromInt(usable)
			continue
		}
		out[slot] = decimal.Max(decimal.Zero, capacity.Sub(reserved[slot]))
	}
	for _, slot := range []string{"cpu", "mem"} {
		if v, ok := out[slot]; ok && v.Sign() <= 0 {
			return nil, fmt.Errorf("%w: no usable %s left to report (%s)", ErrInitialization, slot, v)
		}
	}
	return out, nil
}

// pythonDiv divides like Python's default decimal context: 28 significant
// digits, half-even.
func pythonDiv(a, b decimal.Decimal) decimal.Decimal {
	q := a.DivRound(b, 60)
	if q.IsZero() {
		return q
	}
	mostSignificant := int32(q.NumDigits()) + q.Exponent() - 1
	return q.RoundBank(27 - mostSignificant)
}
