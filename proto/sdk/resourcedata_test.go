package sdk

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestParseResourceData(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        map[string]string
		wantErr     string
	}{
		{
			description: "upstream resource.txt",
			input: "SCRATCH_SIZE=0m\nMOUNTS=/s/config:/home/config:ro\nSLOTS={\"cpu\":\"2\",\"mem\":\"4294967296\"}\n" +
				"UNIFIED_DEVICES=[]\nCPU_SHARES=0:1,1:1\nMEM_SHARES=root:4g\nCID=abc\n",
			want: map[string]string{
				"SCRATCH_SIZE": "0m", "MOUNTS": "/s/config:/home/config:ro", "SLOTS": `{"cpu":"2","mem":"4294967296"}`,
				"UNIFIED_DEVICES": "[]", "CPU_SHARES": "0:1,1:1", "MEM_SHARES": "root:4g", "CID": "abc",
			},
		},
		{
			description: "blank lines and lines without '=' are skipped as upstream",
			input:       "\n\nCPU_SHARES=0:1\njust words\n   \n",
			want:        map[string]string{"CPU_SHARES": "0:1"},
		},
		{
			description: "the line is trimmed, then split at the first '='",
			input:       "  K=a=b  \r\nEMPTY=\n",
			want:        map[string]string{"K": "a=b", "EMPTY": ""},
		},
		{
			description: "a later key overrides an earlier one",
			input:       "CID=first\nCID=second",
			want:        map[string]string{"CID": "second"},
		},
		{
			description: "empty input",
			input:       "",
			want:        map[string]string{},
		},
		{
			description: "an empty key names its line",
			input:       "CID=x\n\n=value\n",
			wantErr:     "line 3: empty key",
		},
		{
			description: "invalid UTF-8 names its line",
			input:       "CID=x\nK=\xff\xfe\n",
			wantErr:     "line 2: not valid UTF-8",
		},
		{
			description: "an overlong line names its line",
			input:       "CID=x\nMOUNTS=" + strings.Repeat("a", maxResourceDataLine+1),
			wantErr:     "line 2: longer than",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseResourceData(strings.NewReader(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWriteResourceData(t *testing.T) {
	cases := []struct {
		description string
		data        map[string]string
		want        string
		wantErr     string
	}{
		{
			description: "keys are sorted",
			data:        map[string]string{"MEM_SHARES": "root:4g", "CPU_SHARES": "0:1", "CID": "x"},
			want:        "CID=x\nCPU_SHARES=0:1\nMEM_SHARES=root:4g\n",
		},
		{description: "a key with '='", data: map[string]string{"A=B": "x"}, wantErr: `"A=B": contains '='`},
		{description: "a value with a line break", data: map[string]string{"A": "x\nB=y"}, wantErr: `"A": value contains a line break`},
		{description: "an empty key", data: map[string]string{"": "x"}, wantErr: "empty"},
		{description: "a padded key", data: map[string]string{" A": "x"}, wantErr: "padded"},
		{description: "a value with trailing space would not read back", data: map[string]string{"A": "x "}, wantErr: "trailing space"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteResourceData(&buf, tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if buf.String() != tc.want {
				t.Fatalf("wrote %q, want %q", buf.String(), tc.want)
			}
			back, err := ParseResourceData(&buf)
			if err != nil || !maps.Equal(back, tc.data) {
				t.Fatalf("read back %v (%v), want %v", back, err, tc.data)
			}
		})
	}
}

func TestAllocationFromResourceData(t *testing.T) {
	cases := []struct {
		description string
		data        map[string]string
		kinds       []string
		want        Allocation
		wantErr     string
	}{
		{
			description: "cpu and mem with a binary size",
			data:        map[string]string{"CPU_SHARES": "0:1,1:1", "MEM_SHARES": "root:4g", "CID": "x", "SLOTS": "{}"},
			kinds:       []string{"cpu", "mem"},
			want:        Allocation{"cpu": {"0": dec("1"), "1": dec("1")}, "mem": {"root": dec("4294967296")}},
		},
		{
			description: "only the given kinds are read",
			data:        map[string]string{"CPU_SHARES": "0:1", "CUDA.DEVICE_SHARES": "0:1"},
			kinds:       []string{"cuda"},
			want:        Allocation{"cuda.device": {"0": dec("1")}},
		},
		{
			description: "a MIG slot keeps its profile and belongs to its kind",
			data:        map[string]string{"CUDA.DEVICE:1G.5GB-MIG_SHARES": "MIG-GPU-1/1/0:1"},
			kinds:       []string{"cuda"},
			want:        Allocation{"cuda.device:1g.5gb-mig": {"MIG-GPU-1/1/0": dec("1")}},
		},
		{
			description: "fractional shares stay exact",
			data:        map[string]string{"CUDA.SHARES_SHARES": "0:0.5,1:0.25"},
			kinds:       []string{"cuda"},
			want:        Allocation{"cuda.shares": {"0": dec("0.5"), "1": dec("0.25")}},
		},
		{
			description: "nil kinds reads every kind",
			data:        map[string]string{"CPU_SHARES": "0:2", "ROCM.DEVICE_SHARES": "1:1"},
			want:        Allocation{"cpu": {"0": dec("2")}, "rocm.device": {"1": dec("1")}},
		},
		{
			description: "entries without a device or amount are skipped as upstream",
			data:        map[string]string{"CPU_SHARES": "0:1,,:2,3:, 4 : 1 ,5"},
			kinds:       []string{"cpu"},
			want:        Allocation{"cpu": {"0": dec("1"), "4": dec("1")}},
		},
		{
			description: "an empty line value gives an empty slot",
			data:        map[string]string{"CPU_SHARES": ""},
			kinds:       []string{"cpu"},
			want:        Allocation{"cpu": {}},
		},
		{
			description: "a repeated device keeps its last amount",
			data:        map[string]string{"CPU_SHARES": "0:1,0:3"},
			kinds:       []string{"cpu"},
			want:        Allocation{"cpu": {"0": dec("3")}},
		},
		{
			description: "bytes written in other BinarySize spellings",
			data:        map[string]string{"MEM_SHARES": "a:512m,b:1.5 GiB,c:2KB,d:1_024,e:512 bytes"},
			kinds:       []string{"mem"},
			want: Allocation{"mem": {
				"a": dec("536870912"), "b": dec("1610612736"), "c": dec("2048"), "d": dec("1024"), "e": dec("512"),
			}},
		},
		{
			description: "a bad decimal names the key and device",
			data:        map[string]string{"CPU_SHARES": "0:1,1:abc"},
			kinds:       []string{"cpu"},
			wantErr:     `key "CPU_SHARES": device "1": invalid amount "abc"`,
		},
		{
			description: "a negative amount names the key",
			data:        map[string]string{"MEM_SHARES": "root:-4g"},
			kinds:       []string{"mem"},
			wantErr:     `key "MEM_SHARES": device "root": invalid amount "-4g": negative`,
		},
		{
			description: "an infinite size is rejected",
			data:        map[string]string{"MEM_SHARES": "root:inf"},
			kinds:       []string{"mem"},
			wantErr:     `key "MEM_SHARES"`,
		},
		{
			description: "an absurdly large amount is rejected",
			data:        map[string]string{"CPU_SHARES": "0:1e300"},
			kinds:       []string{"cpu"},
			wantErr:     "integer digits",
		},
		{
			description: "two keys naming one slot are ambiguous",
			data:        map[string]string{"CPU_SHARES": "0:1", "cpu_SHARES": "1:1"},
			kinds:       []string{"cpu"},
			wantErr:     `keys "CPU_SHARES" and "cpu_SHARES" both name slot "cpu"`,
		},
		{
			description: "a bad line for another kind does not matter",
			data:        map[string]string{"CPU_SHARES": "0:1", "CUDA.DEVICE_SHARES": "0:x"},
			kinds:       []string{"cpu"},
			want:        Allocation{"cpu": {"0": dec("1")}},
		},
		{
			description: "a key naming no slot",
			data:        map[string]string{"_SHARES": "0:1"},
			wantErr:     "names no slot",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := AllocationFromResourceData(tc.data, tc.kinds)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !allocationsEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFormatShares(t *testing.T) {
	cases := []struct {
		description string
		slot        string
		amounts     map[string]decimal.Decimal
		bytes       bool
		wantKey     string
		wantValue   string
	}{
		{"4 GiB", "mem", map[string]decimal.Decimal{"root": dec("4294967296")}, true, "MEM_SHARES", "root:4g"},
		{"512 MiB", "mem", map[string]decimal.Decimal{"root": dec("536870912")}, true, "MEM_SHARES", "root:512m"},
		{"1.5 GiB keeps two decimals", "mem", map[string]decimal.Decimal{"root": dec("1610612736")}, true, "MEM_SHARES", "root:1.5g"},
		{"rounded to hundredths", "mem", map[string]decimal.Decimal{"root": dec("1428076625")}, true, "MEM_SHARES", "root:1.33g"},
		{"rounding up to the next power stays in the lower unit", "mem", map[string]decimal.Decimal{"root": dec("1073741823")}, true, "MEM_SHARES", "root:1024m"},
		{"below 1 KiB is a plain integer", "mem", map[string]decimal.Decimal{"root": dec("1023")}, true, "MEM_SHARES", "root:1023"},
		{"zero bytes", "mem", map[string]decimal.Decimal{"root": decimal.Zero}, true, "MEM_SHARES", "root:0"},
		{"fractional bytes are truncated", "mem", map[string]decimal.Decimal{"root": dec("1536.9")}, true, "MEM_SHARES", "root:1.5k"},
		{"large sizes", "mem", map[string]decimal.Decimal{"root": dec("1000000000000000")}, true, "MEM_SHARES", "root:909.49t"},
		{"cores in numeric order", "cpu", map[string]decimal.Decimal{"10": dec("1"), "2": dec("1"), "0": dec("2")}, false, "CPU_SHARES", "0:2,2:1,10:1"},
		{"numeric IDs before names", "cuda.device", map[string]decimal.Decimal{"GPU-b": dec("1"), "1": dec("1"), "GPU-a": dec("1")}, false, "CUDA.DEVICE_SHARES", "1:1,GPU-a:1,GPU-b:1"},
		{"MIG slot upper-cased", "cuda.device:1g.5gb-mig", map[string]decimal.Decimal{"MIG-1": dec("1")}, false, "CUDA.DEVICE:1G.5GB-MIG_SHARES", "MIG-1:1"},
		{"fractions are written exactly", "cuda.shares", map[string]decimal.Decimal{"0": dec("0.50"), "1": dec("0.25")}, false, "CUDA.SHARES_SHARES", "0:0.5,1:0.25"},
		{"no devices", "cpu", map[string]decimal.Decimal{}, false, "CPU_SHARES", ""},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			key, value := FormatShares(tc.slot, tc.amounts, tc.bytes)
			if key != tc.wantKey || value != tc.wantValue {
				t.Fatalf("got %s=%s, want %s=%s", key, value, tc.wantKey, tc.wantValue)
			}
			back, err := AllocationFromResourceData(map[string]string{key: value}, nil)
			if err != nil {
				t.Fatalf("read back %s=%s: %v", key, value, err)
			}
			if len(back[tc.slot]) != len(tc.amounts) {
				t.Fatalf("read back %v, want devices of %v", back, tc.amounts)
			}
		})
	}
}

func TestSharesRoundTrip(t *testing.T) {
	cases := []struct {
		description string
		alloc       Allocation
		bytesSlots  []string
	}{
		{
			description: "cpu, mem and a GPU",
			alloc: Allocation{
				"cpu":         {"0": dec("1"), "1": dec("1"), "17": dec("3")},
				"mem":         {"root": dec("4294967296")},
				"cuda.device": {"0": dec("1")},
			},
			bytesSlots: []string{"mem"},
		},
		{
			description: "fractions and a MIG profile",
			alloc: Allocation{
				"cuda.shares":            {"0": dec("0.33"), "1": dec("1.67")},
				"cuda.device:1g.5gb-mig": {"MIG-GPU-1/1/0": dec("1")},
			},
		},
		{
			description: "bytes that are multiples of a unit survive exactly",
			alloc:       Allocation{"mem": {"root": dec("1610612736")}},
			bytesSlots:  []string{"mem"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			data := map[string]string{}
			for slot, amounts := range tc.alloc {
				k, v := FormatShares(slot, amounts, slices.Contains(tc.bytesSlots, slot))
				data[k] = v
			}
			var buf bytes.Buffer
			if err := WriteResourceData(&buf, data); err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseResourceData(&buf)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AllocationFromResourceData(parsed, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !allocationsEqual(got, tc.alloc) {
				t.Fatalf("round trip gave %v, want %v", got, tc.alloc)
			}
		})
	}
}

func TestParseBinarySize(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        string
		wantErr     string
	}{
		{"plain integer", "4294967296", "4294967296", ""},
		{"lower-case unit", "4g", "4294967296", ""},
		{"upper-case unit", "512M", "536870912", ""},
		{"fraction with a unit", "1.5g", "1610612736", ""},
		{"IEC ending with a space", "1.5 GiB", "1610612736", ""},
		{"KB ending", "2KB", "2048", ""},
		{"bytes ending", "512 bytes", "512", ""},
		{"underscores", "1_048_576", "1048576", ""},
		{"fractional bytes truncate", "1.0001k", "1024", ""},
		{"fraction without a unit", "1.5", "", "fractional bytes"},
		{"unknown unit", "4x", "", "unknown unit"},
		{"bare b", "4b", "", "unknown unit"},
		{"unit without a number", "kb", "", "invalid number"},
		{"infinite", "Infinity", "", "infinite"},
		{"empty", "", "", "no unit"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseBinarySize(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !got.Equal(dec(tc.want)) {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// FuzzParseResourceData feeds arbitrary bytes, as a damaged resource.txt
// would hold. Parsing must not panic; whatever parses must write and read
// back unchanged; allocations must be stable after one format round (bytes
// are rounded to two decimals of their unit, so the first round may lose
// precision, but never a second).
func FuzzParseResourceData(f *testing.F) {
	f.Add([]byte("CPU_SHARES=0:1,1:1\nMEM_SHARES=root:4g\nCUDA.DEVICE_SHARES=0:1\nCID=abc\n"))
	f.Add([]byte("CUDA.DEVICE:1G.5GB-MIG_SHARES=MIG-1/1/0:1\nMEM_SHARES=root:1.33g\n"))
	f.Add([]byte("\n\n=x\nno equals\n  K = v \r\n"))
	f.Add([]byte("CUDA.SHARES_SHARES=0:0.5,1:1e-3,,:\ncpu_SHARES=0:1\n"))
	f.Add([]byte("MEM_SHARES=root:1.5,a:1023.999k,b:1e\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		data, err := ParseResourceData(bytes.NewReader(raw))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteResourceData(&buf, data); err == nil {
			again, err := ParseResourceData(&buf)
			if err != nil {
				t.Fatalf("re-parse of written data failed: %v", err)
			}
			if !maps.Equal(again, data) {
				t.Fatalf("write/parse changed data: %v -> %v", data, again)
			}
		}
		alloc, err := AllocationFromResourceData(data, nil)
		if err != nil {
			return
		}
		first := reformat(t, alloc)
		second := reformat(t, first)
		if !allocationsEqual(first, second) {
			t.Fatalf("format/parse is not stable: %v -> %v", first, second)
		}
	})
}

// reformat writes every slot with FormatShares (mem as bytes) and reads the
// lines back.
func reformat(t *testing.T, alloc Allocation) Allocation {
	t.Helper()
	data := map[string]string{}
	for slot, amounts := range alloc {
		k, v := FormatShares(slot, amounts, slot == "mem")
		data[k] = v
	}
	back, err := AllocationFromResourceData(data, nil)
	if err != nil {
		t.Fatalf("formatted allocation %v does not parse: %v (data %v)", alloc, err, data)
	}
	return back
}

func allocationsEqual(a, b Allocation) bool {
	if len(a) != len(b) {
		return false
	}
	for slot, am := range a {
		bm, ok := b[slot]
		if !ok || len(am) != len(bm) {
			return false
		}
		for dev, v := range am {
			w, ok := bm[dev]
			if !ok || !v.Equal(w) {
				return false
			}
		}
	}
	return true
}
