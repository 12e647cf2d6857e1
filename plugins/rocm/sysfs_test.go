package rocm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

func TestParsers(t *testing.T) {
	props := parseProperties([]byte("simd_count 1216\nvendor_id 4098\nbroken\nname gfx942\n  domain   0  \nhive_id 18446744073709551615\nneg -1\n"))
	tests := []struct {
		description string
		got, want   any
	}{
		{"properties: a number", props["simd_count"], uint64(1216)},
		{"properties: padded", props["domain"], uint64(0)},
		{"properties: full uint64", props["hive_id"], uint64(18446744073709551615)},
		{"properties: non-numbers skipped", len(props), 4},
		{"PCI address from location_id", pciAddress(0, 0xc600), "0000:c6:00.0"},
		{"PCI address with device and function", pciAddress(1, 0x4309), "0001:43:01.1"},
		{"PCI address ignores bits above 16", pciAddress(0, 1<<28|0x0500), "0000:05:00.0"},
		{"NUMA node", pluginkit.ParseNUMANode([]byte("1\n")), 1},
		{"NUMA -1 is unknown", pluginkit.ParseNUMANode([]byte("-1\n")), -1},
		{"NUMA garbage is unknown", pluginkit.ParseNUMANode([]byte("x")), -1},
		{"model from product_name", modelName("AMD Instinct MI300X OAM", 0x74a1, "gfx942"), "AMD Instinct MI300X OAM"},
		{"model from the table", modelName("", 0x740f, "gfx90a"), "AMD Instinct MI210"},
		{"unknown model", modelName("", 0x1234, "gfx1201"), "AMD GPU 0x1234 (gfx1201)"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	hexTests := []struct {
		description string
		in          string
		want        uint16
		wantErr     bool
	}{
		{"vendor", "0x1002\n", 0x1002, false},
		{"upper case", "0X74A1", 0x74a1, false},
		{"no prefix", "1002", 0, true},
		{"too long", "0x10020", 0, true},
		{"empty", "", 0, true},
	}
	for _, tc := range hexTests {
		t.Run("hex id: "+tc.description, func(t *testing.T) {
			got, err := pluginkit.ParsePCIID([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %#x, %v", got, err)
			}
		})
	}
}

// FuzzParseProperties feeds KFD properties files; seeds are the fixtures'.
func FuzzParseProperties(f *testing.F) {
	for _, archive := range []string{fixtureMI300X, fixtureW7900} {
		data, err := os.ReadFile(archive)
		if err != nil {
			f.Fatal(err)
		}
		entries, err := sysfsfixture.Parse(data)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range entries {
			if filepath.Base(e.Path) == "properties" {
				f.Add(e.Data)
			}
		}
	}
	f.Add([]byte("a 1\nb\n\x00 2\n c  3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for name := range parseProperties(data) {
			if name == "" {
				t.Fatal("empty property name")
			}
		}
	})
}

// FuzzParseNumbers feeds the one-value sysfs files (numa_node, hwmon
// readings, gpu_id, vendor/device ids).
func FuzzParseNumbers(f *testing.F) {
	for _, seed := range []string{"0\n", "-1\n", "18446744073709551615", "0x1002\n", "0x74a1", "  42  ", "", "0x"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if n := pluginkit.ParseNUMANode(data); n < -1 {
			t.Fatalf("NUMA node %d", n)
		}
		_, _ = parseUint(data)
		_, _ = pluginkit.ParsePCIID(data)
	})
}
