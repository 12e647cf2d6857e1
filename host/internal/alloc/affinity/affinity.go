// Package affinity groups compute devices by NUMA node so that the allocator
// can place the devices of one kernel close to each other.
//
// It mirrors upstream's agent/affinity_map.py: every pair of devices is
// linked with distance 0 on the same NUMA node and 1 otherwise, so the
// lowest-distance clusters of one device kind are exactly its NUMA groups.
// The graph is never materialised; the groups are computed once at Build.
package affinity

import (
	"fmt"
	"slices"
	"strings"
)

// UnknownNUMANode is the NUMA node of a device whose node is not known.
// Upstream distinguishes None from -1 (each forms its own cluster); the plugin
// wire format has only integers, so both arrive here as -1 and form one cluster.
const UnknownNUMANode = -1

// Device identifies one device in the affinity map. Device IDs are unique
// only within a device kind (cpu "0" and cuda "0" are different devices).
type Device struct {
	Kind     string // the plugin key: "cpu", "mem", "cuda", ...
	ID       string
	NUMANode int
}

// Policy decides how the first device kind of an allocation spreads over
// NUMA clusters.
type Policy int

const (
	// Interleaved round-robins over the NUMA clusters (upstream's default).
	Interleaved Policy = iota
	// PreferSingleNode exhausts one NUMA cluster before the next.
	PreferSingleNode
)

func (p Policy) String() string {
	switch p {
	case Interleaved:
		return "interleaved"
	case PreferSingleNode:
		return "prefer-single-node"
	default:
		return fmt.Sprintf("Policy(%d)", int(p))
	}
}

// ParsePolicy accepts the agent.toml spellings ("interleaved",
// "prefer-single-node") and upstream's enum names ("INTERLEAVED",
// "PREFER_SINGLE_NODE"). "packed", mentioned only in upstream's help text,
// is rejected as upstream rejects it.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "interleaved":
		return Interleaved, nil
	case "prefer-single-node":
		return PreferSingleNode, nil
	default:
		return 0, fmt.Errorf("unknown affinity policy %q (want interleaved or prefer-single-node)", s)
	}
}

// Cluster is the set of devices of one kind on one NUMA node.
type Cluster struct {
	NUMANode int
	Devices  []Device
}

// Map holds every device of every kind, in registration order.
type Map struct {
	kinds map[string]*kindGroups
}

type kindGroups struct {
	devices  []Device
	clusters []Cluster // first-appearance order, then stably largest first
}

// Build registers the devices. Order matters: among equally large NUMA
// clusters the one whose first device comes first is preferred, as in
// upstream's networkx component order.
func Build(devices []Device) *Map {
	m := &Map{kinds: make(map[string]*kindGroups)}
	for _, d := range devices {
		g := m.kinds[d.Kind]
		if g == nil {
			g = &kindGroups{}
			m.kinds[d.Kind] = g
		}
		g.devices = append(g.devices, d)
	}
	for _, g := range m.kinds {
		for _, d := range g.devices {
			i := slices.IndexFunc(g.clusters, func(c Cluster) bool { return c.NUMANode == d.NUMANode })
			if i < 0 {
				g.clusters = append(g.clusters, Cluster{NUMANode: d.NUMANode})
				i = len(g.clusters) - 1
			}
			g.clusters[i].Devices = append(g.clusters[i].Devices, d)
		}
		slices.SortStableFunc(g.clusters, func(a, b Cluster) int { return len(b.Devices) - len(a.Devices) })
	}
	return m
}

// HasKind reports whether any device of the kind is registered.
func (m *Map) HasKind(kind string) bool {
	_, ok := m.kinds[kind]
	return ok
}

// Clusters returns the NUMA clusters of one kind, largest first (ties in
// first-appearance order). It is used for the first device kind of an
// allocation. The result must not be modified.
func (m *Map) Clusters(kind string) []Cluster {
	if g := m.kinds[kind]; g != nil {
		return g.clusters
	}
	return nil
}

// NUMANodes returns the distinct NUMA nodes of the given devices in
// ascending order. Upstream iterates a Python set of small ints, which
// yields the same ascending order for ordinary node numbers.
func NUMANodes(devices []Device) []int {
	nodes := make([]int, 0, 2)
	for _, d := range devices {
		if !slices.Contains(nodes, d.NUMANode) {
			nodes = append(nodes, d.NUMANode)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// Neighbors returns, for a later device kind of an allocation, one primary
// cluster per NUMA node used by src (possibly empty, in ascending node
// order) and the remaining devices of the kind as the secondary set. It is
// upstream's get_distance_ordered_neighbors; the allocator applies the same
// rule on its own per-slot NUMA lists to avoid building these sets.
func (m *Map) Neighbors(src []Device, kind string) (primary []Cluster, secondary []Device) {
	g := m.kinds[kind]
	nodes := NUMANodes(src)
	primary = make([]Cluster, len(nodes))
	for i, n := range nodes {
		primary[i].NUMANode = n
	}
	if g == nil {
		return primary, nil
	}
	for _, d := range g.devices {
		i := slices.Index(nodes, d.NUMANode)
		if i < 0 {
			secondary = append(secondary, d)
			continue
		}
		primary[i].Devices = append(primary[i].Devices, d)
	}
	return primary, secondary
}
