package alloc

import (
	"slices"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

// AffinityHint carries NUMA placement from one device kind to the next
// within one allocation (upstream's AffinityHint). Devices is empty for the
// first kind and then holds the devices the previous kind got.
type AffinityHint struct {
	Map     *affinity.Map
	Policy  affinity.Policy
	Devices []affinity.Device
}

// orderDevices is upstream's get_current_allocations: the slot's devices in
// the order the strategies should use them.
//
// Without a hint: most free capacity first (stable, so ties keep map order).
// For the first kind of an allocation: the kind's NUMA clusters, least
// allocated first (stably, after largest first), each sorted by free
// capacity, concatenated (prefer-single-node) or round-robined
// (interleaved). For later kinds: the devices on the NUMA nodes the previous
// kind used, round-robined, then all others.
//
// The caller has checked that the hint's map knows the slot's kind.
func (m *DeviceMap) orderDevices(s *slotState, hint *AffinityHint) []int {
	out := m.orderBuf[:0]
	if hint == nil {
		out = append(out, s.devices...)
		m.sortByFreeDesc(out)
		return out
	}
	// Each group is a NUMA node's share of the slot, held in groupBuf.
	type group struct {
		slotPos    int // index into s.numaDevices, or -1
		start, end int // range in groupBuf
	}
	var (
		groupsArr [8]group // NUMA nodes rarely exceed 8; append grows past it
		groups    = groupsArr[:0]
		nodes     []int
	)
	first := len(hint.Devices) == 0
	if first {
		for _, c := range hint.Map.Clusters(DeviceKindOf(s.name)) {
			groups = append(groups, group{slotPos: slices.Index(s.numaNodes, c.NUMANode)})
		}
	} else {
		nodes = affinity.NUMANodes(hint.Devices)
		for _, n := range nodes {
			groups = append(groups, group{slotPos: slices.Index(s.numaNodes, n)})
		}
	}
	slices.SortStableFunc(groups, func(a, b group) int {
		return s.groupAllocated(a.slotPos).Cmp(s.groupAllocated(b.slotPos))
	})
	buf := m.groupBuf[:0]
	longest := 0
	for k := range groups {
		groups[k].start = len(buf)
		if p := groups[k].slotPos; p >= 0 {
			buf = append(buf, s.numaDevices[p]...)
		}
		groups[k].end = len(buf)
		m.sortByFreeDesc(buf[groups[k].start:groups[k].end])
		longest = max(longest, groups[k].end-groups[k].start)
	}
	if first && hint.Policy == affinity.PreferSingleNode {
		out = append(out, buf...)
	} else {
		// Round-robin over the groups, skipping exhausted ones, like
		// more_itertools.interleave_longest.
		for k := range longest {
			for _, g := range groups {
				if g.start+k < g.end {
					out = append(out, buf[g.start+k])
				}
			}
		}
	}
	if !first {
		// Every other device of the slot, in map order, then by free space.
		tail := len(out)
		for _, i := range s.devices {
			if !slices.Contains(nodes, m.devices[i].NUMANode) {
				out = append(out, i)
			}
		}
		m.sortByFreeDesc(out[tail:])
	}
	return out
}

func (s *slotState) groupAllocated(pos int) decimal.Decimal {
	if pos < 0 {
		return decZero
	}
	return s.numaAllocated[pos]
}

func (m *DeviceMap) sortByFreeDesc(idx []int) {
	byFree := func(a, b int) int { return m.free[b].Cmp(m.free[a]) }
	// Most calls see devices that are already in order (all idle, or all
	// equally busy); checking first avoids the sort's allocations.
	if slices.IsSortedFunc(idx, byFree) {
		return
	}
	slices.SortStableFunc(idx, byFree)
}
