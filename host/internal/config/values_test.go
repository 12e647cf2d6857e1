package config

import (
	"strings"
	"testing"
)

func TestParseByteSizeLikeUpstream(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        ByteSize
		wantErr     string
	}{
		{"plain bytes", "1024", 1024, ""},
		{"zero", "0", 0, ""},
		{"upper-case giga", "1G", 1 << 30, ""},
		{"mega", "16M", 16 << 20, ""},
		{"lower-case mega", "512m", 512 << 20, ""},
		{"lower-case giga", "8g", 8 << 30, ""},
		{"kilo", "64K", 64 << 10, ""},
		{"tera", "2t", 2 << 40, ""},
		{"exa still fits", "7e", 7 << 60, ""},
		{"underscores ignored", "1_000_000", 1000000, ""},
		{"surrounding spaces", "  2G ", 2 << 30, ""},
		{"gib ending", "1GiB", 1 << 30, ""},
		{"gb ending", "1gb", 1 << 30, ""},
		{"space before unit", "2 KiB", 2 << 10, ""},
		{"bytes word", "100 bytes", 100, ""},
		{"fraction scaled then truncated", "1.5g", 1610612736, ""},
		{"fraction truncated toward zero", "0.0001k", 0, ""},
		{"integral decimal", "536870912.000", 536870912, ""},
		{"negative parses (fields reject it)", "-1G", -(1 << 30), ""},
		{"unknown unit", "1Q", 0, `invalid binary size "1Q"`},
		{"fractional bytes", "1.5", 0, "fractional bytes"},
		{"exponent without unit is fractional upstream", "1e3", 0, "fractional bytes"},
		{"a bare b after digits is not a unit", "100b", 0, "unknown unit"},
		{"infinity rejected", "inf", 0, "infinite"},
		{"empty", "", 0, "empty"},
		{"unit only", "k", 0, "not a number"},
		{"ending only", "b", 0, "no number"},
		{"zetta never fits", "1z", 0, "too large"},
		{"overflow", "9e", 0, "too large"},
		{"huge exponent", "1e100g", 0, "exponent out of range"},
		{"absurd exponent", "1e999999999g", 0, "invalid binary size"},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.input)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: ParseByteSize(%q) error %v", tc.description, tc.input, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: ParseByteSize(%q) = %d, %v; want error containing %q", tc.description, tc.input, got, err, tc.wantErr)
		case tc.wantErr == "" && got != tc.want:
			t.Errorf("%s: ParseByteSize(%q) = %d, want %d", tc.description, tc.input, got, tc.want)
		}
	}
}

func TestByteSizeStringRoundTrips(t *testing.T) {
	cases := []struct {
		description string
		size        ByteSize
		want        string
	}{
		{"zero", 0, "0"},
		{"odd bytes", 1000, "1000"},
		{"kibi", 1 << 10, "1K"},
		{"one and a half gibi prints as mebi", 1536 << 20, "1536M"},
		{"gibi", 1 << 30, "1G"},
		{"exbi", 2 << 60, "2E"},
		{"negative", -(1 << 30), "-1G"},
	}
	for _, tc := range cases {
		if got := tc.size.String(); got != tc.want {
			t.Errorf("%s: String() = %q, want %q", tc.description, got, tc.want)
		}
		back, err := ParseByteSize(tc.size.String())
		if err != nil || back != tc.size {
			t.Errorf("%s: ParseByteSize(%q) = %d, %v; want %d", tc.description, tc.size.String(), back, err, tc.size)
		}
	}
}

func TestParseHostPortLikeUpstream(t *testing.T) {
	cases := []struct {
		description string
		input       any
		want        HostPort
		wantErr     string
	}{
		{"string", "0.0.0.0:6001", HostPort{"0.0.0.0", 6001}, ""},
		{"hostname", "etcd.local:2379", HostPort{"etcd.local", 2379}, ""},
		{"empty host means detect", ":6001", HostPort{"", 6001}, ""},
		{"bracketed IPv6", "[::1]:6001", HostPort{"::1", 6001}, ""},
		{"bare IPv6 split at the last colon", "fe80::1:6001", HostPort{"fe80::1", 6001}, ""},
		{"IPv6 normalized", "[0:0:0:0:0:0:0:1]:80", HostPort{"::1", 80}, ""},
		{"array", []any{"h", int64(80)}, HostPort{"h", 80}, ""},
		{"array with string port", []any{"h", "80"}, HostPort{"h", 80}, ""},
		{"table", map[string]any{"host": "h", "port": int64(80)}, HostPort{"h", 80}, ""},
		{"no port", "localhost", HostPort{}, "host:port"},
		{"port not a number", "h:http", HostPort{}, "not an integer"},
		{"port zero", "h:0", HostPort{}, "between 1 and 65535"},
		{"port too big", "h:65536", HostPort{}, "between 1 and 65535"},
		{"array of one", []any{"h"}, HostPort{}, "exactly [host, port]"},
		{"array host not string", []any{int64(1), int64(2)}, HostPort{}, "host must be a string"},
		{"table without port", map[string]any{"host": "h"}, HostPort{}, `"host" and "port"`},
		{"number", int64(5), HostPort{}, "host:port"},
	}
	for _, tc := range cases {
		got, err := ParseHostPort(tc.input)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: error %v", tc.description, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: got %v, %v; want error containing %q", tc.description, got, err, tc.wantErr)
		case tc.wantErr == "" && got != tc.want:
			t.Errorf("%s: got %#v, want %#v", tc.description, got, tc.want)
		}
	}
}

func TestHostPortString(t *testing.T) {
	cases := []struct {
		description string
		hp          HostPort
		want        string
	}{
		{"IPv4", HostPort{"10.0.0.1", 6001}, "10.0.0.1:6001"},
		{"IPv6 gets brackets", HostPort{"::1", 6001}, "[::1]:6001"},
		{"empty host", HostPort{"", 6001}, ":6001"},
	}
	for _, tc := range cases {
		if got := tc.hp.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.description, got, tc.want)
		}
		if back, err := ParseHostPort(tc.hp.String()); err != nil || back != tc.hp {
			t.Errorf("%s: reparsed as %#v, %v", tc.description, back, err)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	cases := []struct {
		description string
		input       string
		want        PortRange
		wantErr     bool
	}{
		{"dash", "30000-31000", PortRange{30000, 31000}, false},
		{"colon", "30000:31000", PortRange{30000, 31000}, false},
		{"comma with spaces", "30000, 31000", PortRange{30000, 31000}, false},
		{"TOML-like array", "[30000,31000]", PortRange{30000, 31000}, false},
		{"one port", "30000", PortRange{}, true},
		{"three ports", "1-2-3", PortRange{}, true},
		{"words", "low-high", PortRange{}, true},
	}
	for _, tc := range cases {
		got, err := ParsePortRange(tc.input)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("%s: ParsePortRange(%q) = %v, %v", tc.description, tc.input, got, err)
		}
	}
}

func TestHostPortDialAddr(t *testing.T) {
	tests := []struct {
		description string
		hp          HostPort
		want        string
	}{
		{"IPv4 wildcard dials loopback", HostPort{Host: "0.0.0.0", Port: 2379}, "127.0.0.1:2379"},
		{"IPv6 wildcard dials loopback", HostPort{Host: "::", Port: 2379}, "127.0.0.1:2379"},
		{"empty host dials loopback", HostPort{Port: 2379}, "127.0.0.1:2379"},
		{"an address is kept", HostPort{Host: "10.0.0.5", Port: 2379}, "10.0.0.5:2379"},
		{"an IPv6 address is bracketed", HostPort{Host: "fd00::1", Port: 2379}, "[fd00::1]:2379"},
		{"a name is kept", HostPort{Host: "etcd.local", Port: 2379}, "etcd.local:2379"},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			if got := tt.hp.DialAddr(); got != tt.want {
				t.Errorf("%+v.DialAddr() = %q, want %q", tt.hp, got, tt.want)
			}
		})
	}
}
