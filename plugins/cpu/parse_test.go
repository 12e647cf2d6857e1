package cpu

import (
	"maps"
	"strconv"
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        map[string]uint64
		wantErr     string
	}{
		{
			description: "kB fields become bytes, unitless fields stay counts",
			input:       "MemTotal:       16384000 kB\nMemAvailable:    12288000 kB\nHugePages_Total:       3\n",
			want:        map[string]uint64{"MemTotal": 16384000 * 1024, "MemAvailable": 12288000 * 1024, "HugePages_Total": 3},
		},
		{description: "blank lines are ignored", input: "\nMemTotal: 1 kB\n\n", want: map[string]uint64{"MemTotal": 1024}},
		{description: "no colon", input: "MemTotal 1 kB", wantErr: "line 1: no ':'"},
		{description: "not a number", input: "MemTotal: 1 kB\nMemFree: lots kB", wantErr: "line 2 (MemFree)"},
		{description: "unknown unit", input: "MemTotal: 1 MB", wantErr: `unknown unit "MB"`},
		{description: "overflow", input: "MemTotal: 18446744073709551615 kB", wantErr: "overflows"},
		{description: "missing value", input: "MemTotal:", wantErr: "want a value"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseMeminfo([]byte(tc.input))
			checkParse(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestParseFlatKeyed(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        map[string]uint64
		wantErr     string
	}{
		{
			description: "cgroup v2 cpu.stat",
			input:       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
			want:        map[string]uint64{"usage_usec": 2500000, "user_usec": 2000000, "system_usec": 500000},
		},
		{description: "memory.stat with a zero", input: "anon 4096\ninactive_file 0\n", want: map[string]uint64{"anon": 4096, "inactive_file": 0}},
		{description: "three fields", input: "usage_usec 1 2", wantErr: `line 1: want "key value"`},
		{description: "negative", input: "anon 1\nfile -1", wantErr: "line 2 (file)"},
		{description: "repeated key", input: "anon 1\nanon 2", wantErr: `key "anon" repeated`},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseFlatKeyed([]byte(tc.input))
			checkParse(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestParseIOStat(t *testing.T) {
	cases := []struct {
		description string
		input       string
		wantRead    uint64
		wantWrite   uint64
		wantErr     string
	}{
		{
			description: "two devices are summed",
			input:       "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=3387392 wbytes=176128 rios=103 wios=32\n",
			wantRead:    1459200 + 3387392, wantWrite: 314773504 + 176128,
		},
		{description: "empty file", input: "", wantRead: 0, wantWrite: 0},
		{description: "a device with no counters yet", input: "253:0\n", wantRead: 0, wantWrite: 0},
		{description: "not a device", input: "rbytes=1", wantErr: "not a MAJ:MIN device"},
		{description: "not key=value", input: "8:0 rbytes", wantErr: `"rbytes" is not key=value`},
		{description: "bad number", input: "8:0 rbytes=x", wantErr: "line 1 (rbytes)"},
		{description: "overflow", input: "8:0 wbytes=18446744073709551615\n8:1 wbytes=1", wantErr: "overflows"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			r, w, err := ParseIOStat([]byte(tc.input))
			checkIO(t, r, w, err, tc.wantRead, tc.wantWrite, tc.wantErr)
		})
	}
}

func TestParseBlkioServiceBytes(t *testing.T) {
	cases := []struct {
		description string
		input       string
		wantRead    uint64
		wantWrite   uint64
		wantErr     string
	}{
		{
			description: "read and write per device, totals skipped",
			input:       "8:0 Read 13918208\n8:0 Write 4096\n8:0 Sync 0\n8:0 Async 13922304\n8:0 Total 13922304\n8:16 Read 100\n8:16 Write 200\nTotal 13922604\n",
			wantRead:    13918308, wantWrite: 4296,
		},
		{description: "only the grand total", input: "Total 0\n", wantRead: 0, wantWrite: 0},
		{description: "short line", input: "8:0 Read", wantErr: "line 1: want"},
		{description: "bad number", input: "8:0 Write many", wantErr: "line 1 (Write)"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			r, w, err := ParseBlkioServiceBytes([]byte(tc.input))
			checkIO(t, r, w, err, tc.wantRead, tc.wantWrite, tc.wantErr)
		})
	}
}

func TestParseProcStat(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        map[int]CoreTimes
		wantErr     string
	}{
		{
			description: "per-core lines, aggregate and others skipped",
			input:       "cpu  30 0 15 100 0 0 0 0 0 0\ncpu0 10 1 5 50 0 0 0 0 0 0\ncpu3 20 2 10 50 0 0 0 0 0 0\nintr 1 2 3\nctxt 5\n",
			want:        map[int]CoreTimes{0: {User: 10, System: 5}, 3: {User: 20, System: 10}},
		},
		{description: "too few fields", input: "cpu0 1 2", wantErr: "cpu0 has 3 fields"},
		{description: "bad counter", input: "cpu1 1 2 x 4", wantErr: "cpu1 system"},
		{description: "bad core name", input: "cpuX 1 2 3 4", wantErr: "stat line 1"},
		{description: "repeated core", input: "cpu0 1 2 3 4\ncpu0 1 2 3 4", wantErr: "cpu0 repeated"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tc.input))
			checkParse(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestParseCgroupLimit(t *testing.T) {
	cases := []struct {
		description   string
		input         string
		wantLimit     uint64
		wantUnlimited bool
		wantErr       string
	}{
		{description: "v2 limit", input: "8589934592\n", wantLimit: 8589934592},
		{description: "v2 max", input: "max\n", wantUnlimited: true},
		{description: "v1 no limit", input: "9223372036854771712\n", wantUnlimited: true},
		{description: "garbage", input: "lots", wantErr: `memory limit "lots"`},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			limit, unlimited, err := ParseCgroupLimit([]byte(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || limit != tc.wantLimit || unlimited != tc.wantUnlimited {
				t.Fatalf("got %d unlimited=%v err=%v, want %d unlimited=%v", limit, unlimited, err, tc.wantLimit, tc.wantUnlimited)
			}
		})
	}
}

func checkParse[K comparable, V comparable](t *testing.T, got map[K]V, err error, want map[K]V, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func checkIO(t *testing.T, r, w uint64, err error, wantRead, wantWrite uint64, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil || r != wantRead || w != wantWrite {
		t.Fatalf("got read=%d write=%d err=%v, want read=%d write=%d", r, w, err, wantRead, wantWrite)
	}
}

// FuzzParseMeminfo: /proc/meminfo bytes must never panic, and whatever
// parses must read back the same when written as plain counts.
func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("MemTotal:       16384000 kB\nMemAvailable:    12288000 kB\nHugePages_Total:       0\n"))
	f.Add([]byte("MemTotal: 18014398509481983 kB\n"))
	f.Add([]byte(":\n: kB\nX:1 kB extra\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fields, err := ParseMeminfo(data)
		if err != nil {
			return
		}
		var b strings.Builder
		for k, v := range fields {
			b.WriteString(k + ": " + strconv.FormatUint(v, 10) + "\n")
		}
		again, err := ParseMeminfo([]byte(b.String()))
		if err != nil || !maps.Equal(again, fields) {
			t.Fatalf("re-parse of %v gave %v, %v", fields, again, err)
		}
	})
}

// FuzzParseCgroupStat feeds the same bytes to every cgroup and procfs stat
// parser; none may panic, and the flat-keyed parser must give back exactly
// the keys a re-serialization holds.
func FuzzParseCgroupStat(f *testing.F) {
	f.Add([]byte("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"))
	f.Add([]byte("8:16 rbytes=1459200 wbytes=314773504 rios=192\n8:0 rbytes=1\n"))
	f.Add([]byte("8:0 Read 13918208\n8:0 Write 4096\nTotal 13922304\n"))
	f.Add([]byte("cpu  1 2 3 4\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	f.Add([]byte("max\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if kv, err := ParseFlatKeyed(data); err == nil {
			var b strings.Builder
			for k, v := range kv {
				b.WriteString(k + " " + strconv.FormatUint(v, 10) + "\n")
			}
			again, err := ParseFlatKeyed([]byte(b.String()))
			if err != nil || !maps.Equal(again, kv) {
				t.Fatalf("re-parse of %v gave %v, %v", kv, again, err)
			}
		}
		_, _, _ = ParseIOStat(data)
		_, _, _ = ParseBlkioServiceBytes(data)
		_, _ = ParseProcStat(data)
		_, _, _ = ParseCgroupLimit(data)
		_, _ = ParseSingleUint(data)
	})
}
