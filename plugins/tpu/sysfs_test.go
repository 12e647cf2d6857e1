package tpu

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

func itoa(i int) string { return strconv.Itoa(i) }
func hex2(i int) string { return fmt.Sprintf("%02x", i) }

func TestParsers(t *testing.T) {
	class := func(s string) any { c, err := parseClass([]byte(s)); return fmt.Sprint(c, err == nil) }
	hexID := func(s string) any { c, err := pluginkit.ParsePCIID([]byte(s)); return fmt.Sprint(c, err == nil) }
	idx := func(s string) any { n, ok := parseIndexedName(s, "accel"); return fmt.Sprint(n, ok) }
	tests := []struct {
		description string
		got, want   any
	}{
		{"vendor id", hexID("0x1ae0\n"), fmt.Sprint(0x1ae0, true)},
		{"id without 0x", hexID("1ae0"), "0 false"},
		{"accelerator class", class("0x120000\n"), fmt.Sprint(0x12, true)},
		{"network class", class("0x020000"), fmt.Sprint(0x02, true)},
		{"class too long", class("0x1200000"), "0 false"},
		{"accel index", idx("accel3"), "3 true"},
		{"accel with leading zero", idx("accel03"), "0 false"},
		{"not accel", idx("card0"), "0 false"},
		{"NUMA", pluginkit.ParseNUMANode([]byte("1\n")), 1},
		{"NUMA -1", pluginkit.ParseNUMANode([]byte("-1")), -1},
		{"known chip", modelName(chipsByDeviceID[0x0062], true, 0x0062), "TPU v5p"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

// FuzzParseSysfsValues feeds the one-value PCI files (vendor, device,
// class, numa_node) and accel names; seeds come from the fixtures.
func FuzzParseSysfsValues(f *testing.F) {
	for _, archive := range []string{fixtureV4, fixtureV5e} {
		data, err := os.ReadFile(archive)
		if err != nil {
			f.Fatal(err)
		}
		entries, err := sysfsfixture.Parse(data)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range entries {
			if e.Link == "" && len(e.Data) < 64 {
				f.Add(e.Data)
			}
		}
	}
	f.Add([]byte("0x"))
	f.Add([]byte("accel-1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if n := pluginkit.ParseNUMANode(data); n < -1 {
			t.Fatalf("NUMA node %d", n)
		}
		_, _ = pluginkit.ParsePCIID(data)
		_, _ = parseClass(data)
		if n, ok := parseIndexedName(string(data), "accel"); ok && (n < 0 || "accel"+strconv.Itoa(n) != string(data)) {
			t.Fatalf("accel index %d from %q", n, data)
		}
	})
}
