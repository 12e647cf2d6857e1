package affinity

import (
	"fmt"
	"slices"
	"testing"
)

// TestAffinityClusters is the first part of fixture 19
// (test_affinity_map_first_allocation, test_affinity_map_neighbor_devices).
func TestAffinityClusters(t *testing.T) {
	cases := []struct {
		description string
		devices     []Device
		kind        string
		want        [][]string
	}{
		{"a single device is one cluster", []Device{{Kind: "cpu", ID: "a0", NUMANode: 0}}, "cpu", [][]string{{"a0"}}},
		{"a kind without devices has no cluster", []Device{{Kind: "cpu", ID: "a0", NUMANode: 0}}, "xpu", [][]string{}},
		{"unknown NUMA nodes (None or -1 upstream) form one cluster",
			[]Device{{Kind: "cpu", ID: "a0", NUMANode: -1}, {Kind: "cpu", ID: "a1", NUMANode: -1}}, "cpu", [][]string{{"a0", "a1"}}},
		{"largest cluster first, then first seen",
			[]Device{
				{Kind: "cpu", ID: "a0", NUMANode: 0}, {Kind: "cpu", ID: "b0", NUMANode: 1}, {Kind: "cpu", ID: "d0", NUMANode: 3},
				{Kind: "cpu", ID: "d1", NUMANode: 3}, {Kind: "cpu", ID: "b1", NUMANode: 1}, {Kind: "cuda", ID: "x0", NUMANode: 3},
			}, "cpu", [][]string{{"b0", "b1"}, {"d0", "d1"}, {"a0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got := clusterIDs(Build(tc.devices).Clusters(tc.kind))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("clusters %v, want %v", got, tc.want)
			}
		})
	}

	var devices []Device
	for node, ids := range [][]string{{"a0", "a1", "a2"}, {"b0", "b1", "b2"}, {"c0", "c1"}, {"d0", "d1", "d2", "d3"}} {
		for _, id := range ids {
			devices = append(devices, Device{Kind: "cpu", ID: id, NUMANode: node})
		}
	}
	for node := range 4 {
		devices = append(devices, Device{Kind: "cuda", ID: fmt.Sprintf("x%d", node), NUMANode: node})
	}
	m := Build(devices)
	x := func(ids ...string) []Device {
		var out []Device
		for _, d := range devices {
			if slices.Contains(ids, d.ID) {
				out = append(out, d)
			}
		}
		return out
	}
	neighbours := []struct {
		description   string
		src           []Device
		kind          string
		wantPrimary   [][]string
		wantSecondary []string
	}{
		{"prev x0 -> node 0 cores first", x("x0"), "cpu", [][]string{{"a0", "a1", "a2"}}, []string{"b0", "b1", "b2", "c0", "c1", "d0", "d1", "d2", "d3"}},
		{"prev x0, x1 -> nodes 0 and 1", x("x0", "x1"), "cpu", [][]string{{"a0", "a1", "a2"}, {"b0", "b1", "b2"}}, []string{"c0", "c1", "d0", "d1", "d2", "d3"}},
		{"prev x1, x2, x3", x("x1", "x2", "x3"), "cpu", [][]string{{"b0", "b1", "b2"}, {"c0", "c1"}, {"d0", "d1", "d2", "d3"}}, []string{"a0", "a1", "a2"}},
		{"prev cores on two nodes -> x0, x1", x("a0", "a1", "b0", "b1"), "cuda", [][]string{{"x0"}, {"x1"}}, []string{"x2", "x3"}},
		{"prev cores on one node -> x0", x("a0", "a1"), "cuda", [][]string{{"x0"}}, []string{"x1", "x2", "x3"}},
	}
	for _, tc := range neighbours {
		t.Run(tc.description, func(t *testing.T) {
			primary, secondary := m.Neighbors(tc.src, tc.kind)
			if got := clusterIDs(primary); fmt.Sprint(got) != fmt.Sprint(tc.wantPrimary) {
				t.Errorf("primary %v, want %v", got, tc.wantPrimary)
			}
			if got := deviceIDs(secondary); fmt.Sprint(got) != fmt.Sprint(tc.wantSecondary) {
				t.Errorf("secondary %v, want %v", got, tc.wantSecondary)
			}
		})
	}
}

func clusterIDs(cs []Cluster) [][]string {
	out := make([][]string, len(cs))
	for i, c := range cs {
		for _, d := range c.Devices {
			out[i] = append(out[i], d.ID)
		}
	}
	return out
}

func deviceIDs(ds []Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"interleaved", Interleaved, false},
		{"INTERLEAVED", Interleaved, false},
		{"prefer-single-node", PreferSingleNode, false},
		{"PREFER_SINGLE_NODE", PreferSingleNode, false},
		{"packed", 0, true},
	} {
		got, err := ParsePolicy(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, %v", tc.in, got, err)
		}
	}
}
