// Package resources turns what the plugins describe into the allocation
// engine's maps and the slots the agent reports to the manager.
package resources

import (
	"fmt"
	"slices"
	"sort"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/alloc/accounting"
	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/proto/sdk"
)

// Plugin is one running plugin's description and devices.
type Plugin struct {
	Description sdk.Description
	Devices     []sdk.Device
}

// MapSpecs builds one alloc map per resource kind.
func MapSpecs(plugins []Plugin) ([]alloc.MapSpec, error) {
	var specs []alloc.MapSpec
	for _, p := range plugins {
		for _, kind := range p.Description.Kinds {
			spec, err := mapSpec(kind, p.Devices)
			if err != nil {
				return nil, fmt.Errorf("plugin %q: %w", p.Description.Name, err)
			}
			specs = append(specs, spec)
		}
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Kind < specs[j].Kind })
	return specs, nil
}

func mapSpec(kind sdk.ResourceKind, devices []sdk.Device) (alloc.MapSpec, error) {
	spec := alloc.MapSpec{
		Kind:              kind.Key,
		Quantum:           kind.AllocMap.Quantum,
		MinMemory:         kind.AllocMap.MinMemory,
		DenyFragmentation: !kind.AllocMap.AllowFragmentation,
		ExclusiveSlots:    kind.ExclusiveSlotPatterns,
	}
	switch kind.AllocMap.Kind {
	case sdk.AllocDiscrete:
		spec.Type = alloc.Discrete
	case sdk.AllocFractional:
		spec.Type = alloc.Fractional
	default:
		return spec, fmt.Errorf("kind %q: unknown alloc map kind %v", kind.Key, kind.AllocMap.Kind)
	}
	switch kind.AllocMap.Strategy {
	case sdk.StrategyFill:
		spec.Strategy = alloc.Fill
	case sdk.StrategyEvenly:
		spec.Strategy = alloc.Evenly
	default:
		return spec, fmt.Errorf("kind %q: unknown alloc strategy %v", kind.Key, kind.AllocMap.Strategy)
	}
	slotKinds := map[string]alloc.SlotKind{}
	for _, st := range kind.SlotTypes {
		sk, err := alloc.ParseSlotKind(st.Kind.String())
		if err != nil {
			return spec, fmt.Errorf("slot %q: %w", st.Name, err)
		}
		slotKinds[st.Name] = sk
	}
	for _, d := range devices {
		sk, ok := slotKinds[d.SlotName]
		if !ok {
			continue // another kind of the same plugin
		}
		spec.Devices = append(spec.Devices, alloc.Device{
			ID:       d.ID,
			Slot:     d.SlotName,
			SlotKind: sk,
			Capacity: d.Capacity,
			NUMANode: d.NUMANode,
		})
	}
	return spec, nil
}

// AllocationOrder is resource.allocation-order with kinds it does not name
// (a vendor's plugin) placed before cpu and mem, in name order, rather than
// refused as upstream does: an operator dropping in a plugin expects it to
// work. The added kinds are returned so the caller can say so.
func AllocationOrder(configured []string, specs []alloc.MapSpec) (order, added []string) {
	order = slices.Clone(configured)
	if len(order) == 0 {
		order = alloc.DefaultAllocationOrder()
	}
	for _, s := range specs {
		if !slices.Contains(order, s.Kind) {
			added = append(added, s.Kind)
		}
	}
	sort.Strings(added)
	at := len(order)
	for i, k := range order {
		if k == "cpu" || k == "mem" {
			at = i
			break
		}
	}
	order = slices.Insert(order, at, added...)
	return order, added
}

// NewAllocator builds the allocator for the plugins' devices.
func NewAllocator(cfg config.ResourceConfig, specs []alloc.MapSpec) (*alloc.Allocator, []string, error) {
	policy, err := affinity.ParsePolicy(string(cfg.AffinityPolicy))
	if err != nil {
		return nil, nil, fmt.Errorf("resource.affinity-policy: %w", err)
	}
	order, added := AllocationOrder(cfg.AllocationOrder, specs)
	a, err := alloc.NewAllocator(alloc.Config{AllocationOrder: order, AffinityPolicy: policy}, specs)
	if err != nil {
		return nil, nil, err
	}
	return a, added, nil
}

// Reservation is the reserved-cpu/mem/disk of the configuration.
func Reservation(cfg config.ResourceConfig) accounting.Reservation {
	return accounting.Reservation{
		CPU:  decimal.NewFromInt(int64(cfg.ReservedCPU)),
		Mem:  decimal.NewFromInt(int64(cfg.ReservedMem)),
		Disk: decimal.NewFromInt(int64(cfg.ReservedDisk)),
	}
}

// ReportedSlots are the slots sent to the manager: this agent's partition
// of the node (agent/resources.py ResourceAllocator) minus the reservation,
// mem aligned to memory-align-size. Shared and auto-split with one agent
// report the whole node less reserved-cpu/-mem; manual reports exactly
// [resource.allocations], and a slot of the node that the allocations do
// not list fails, naming it.
func ReportedSlots(cfg config.ResourceConfig, a *alloc.Allocator) (map[string]decimal.Decimal, error) {
	mode := accounting.Shared
	if cfg.AllocationMode != "" {
		parsed, err := accounting.ParseMode(string(cfg.AllocationMode))
		if err != nil {
			return nil, fmt.Errorf("resource.allocation-mode: %w", err)
		}
		mode = parsed
	}
	self := accounting.Agent{ID: "this agent"}
	if cfg.Allocations != nil {
		devices := make(map[string]decimal.Decimal, len(cfg.Allocations.Devices))
		for slot, amount := range cfg.Allocations.Devices {
			devices[slot] = amount
		}
		self.Manual = &accounting.ManualAllocation{
			CPU:     decimal.NewFromInt(int64(cfg.Allocations.CPU)),
			Mem:     decimal.NewFromInt(int64(cfg.Allocations.Mem)),
			Devices: devices,
		}
	}
	totals := a.SlotTotals()
	if mode == accounting.Manual && self.Manual != nil {
		for _, t := range totals {
			if _, listed := self.Manual.Devices[t.Slot]; !listed && t.Slot != "cpu" && t.Slot != "mem" {
				return nil, fmt.Errorf("resource.allocations.devices: %w: the node has slot %q (from its plugins) but the allocations do not list it; add \"%s\" = <amount>",
					accounting.ErrInvalidConfig, t.Slot, t.Slot)
			}
		}
	}
	parts, err := accounting.Split(totals, Reservation(cfg), mode, []accounting.Agent{self})
	if err != nil {
		return nil, fmt.Errorf("resource.allocation-mode %s: %w", mode, err)
	}
	if mode == accounting.Manual {
		// Upstream's over-allocation check sums what the agents leave
		// unreserved, which for a single agent never exceeds the node; it then
		// reports the whole node. Refuse instead: the manager would schedule
		// what is not there.
		available, err := accounting.AvailableTotals(totals, Reservation(cfg))
		if err != nil {
			return nil, err
		}
		for _, t := range totals {
			if share := parts[0].Allocated[t.Slot]; share.GreaterThan(available[t.Slot]) {
				return nil, fmt.Errorf("resource.allocations: %w: slot %s is allocated %s but the node has %s (less the reservation)",
					accounting.ErrOverAllocated, t.Slot, share, available[t.Slot])
			}
		}
	}
	scanned := map[string]decimal.Decimal{}
	for _, t := range totals {
		scanned[t.Slot] = t.Total
	}
	return accounting.ReportedSlots(scanned, parts[0].Reserved, int64(cfg.MemoryAlignSize))
}
