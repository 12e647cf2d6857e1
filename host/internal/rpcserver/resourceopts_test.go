package rpcserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// resource_opts.shmem as agent/docker/agent.py applies it
// (int(resource_opts["shmem"]) when truthy) and the 26.8 manager sends it
// (int bytes; the launcher's default 64m).
func TestShmemBytes(t *testing.T) {
	cases := []struct {
		description string
		opts        map[string]any
		want        int64
		wantErr     string // the Python exception name
	}{
		{description: "absent: Docker's default", opts: map[string]any{}, want: 0},
		{description: "None: Docker's default", opts: map[string]any{"shmem": nil}, want: 0},
		{description: "int bytes as the 26.8 manager sends", opts: map[string]any{"shmem": int64(1 << 30)}, want: 1 << 30},
		{description: "uint64", opts: map[string]any{"shmem": uint64(64 << 20)}, want: 64 << 20},
		{description: "BinarySize", opts: map[string]any{"shmem": wiremsg.BinarySize(2 << 30)}, want: 2 << 30},
		{description: "Decimal", opts: map[string]any{"shmem": decimal.RequireFromString("1073741824")}, want: 1 << 30},
		{description: "fractional Decimal truncated as int()", opts: map[string]any{"shmem": decimal.RequireFromString("1024.9")}, want: 1024},
		{description: "string with unit", opts: map[string]any{"shmem": "1g"}, want: 1 << 30},
		{description: "string 64m", opts: map[string]any{"shmem": "64m"}, want: 64 << 20},
		{description: "string of bytes", opts: map[string]any{"shmem": "1048576"}, want: 1 << 20},
		{description: "string with GiB ending", opts: map[string]any{"shmem": "2GiB"}, want: 2 << 30},
		{description: "empty string", opts: map[string]any{"shmem": ""}, want: 0},
		{description: "float truncated", opts: map[string]any{"shmem": 1024.5}, want: 1024},
		{description: "zero", opts: map[string]any{"shmem": int64(0)}, want: 0},
		{description: "negative int", opts: map[string]any{"shmem": int64(-1)}, wantErr: "ValueError"},
		{description: "negative Decimal", opts: map[string]any{"shmem": decimal.RequireFromString("-5")}, wantErr: "ValueError"},
		{description: "huge Decimal", opts: map[string]any{"shmem": decimal.RequireFromString("1e40")}, wantErr: "ValueError"},
		{description: "NaN float", opts: map[string]any{"shmem": nanFloat()}, wantErr: "ValueError"},
		{description: "unknown unit", opts: map[string]any{"shmem": "3q"}, wantErr: "ValueError"},
		{description: "infinite string", opts: map[string]any{"shmem": "inf"}, wantErr: "ValueError"},
		{description: "bool", opts: map[string]any{"shmem": true}, wantErr: "TypeError"},
		{description: "list", opts: map[string]any{"shmem": []any{int64(1)}}, wantErr: "TypeError"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := shmemBytes(`configs[0]["resource_opts"]["shmem"]`, tc.opts)
			if tc.wantErr != "" {
				var rpcErr *Error
				if !errors.As(err, &rpcErr) || rpcErr.Name != tc.wantErr {
					t.Fatalf("got %d, %v; want %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func nanFloat() float64 {
	zero := 0.0
	return zero / zero
}

// TestDenyFragmentation pins resource_opts' allow_fractional_resource_fragmentation
// as upstream's create_kernel reads it (agent/agent.py: .get(..., True)).
func TestDenyFragmentation(t *testing.T) {
	for _, tc := range []struct {
		description string
		opts        map[string]any
		want        bool
		wantErr     string
	}{
		{"absent: allowed", map[string]any{}, false, ""},
		{"None: allowed", map[string]any{"allow_fractional_resource_fragmentation": nil}, false, ""},
		{"True: allowed", map[string]any{"allow_fractional_resource_fragmentation": true}, false, ""},
		{"False: denied", map[string]any{"allow_fractional_resource_fragmentation": false}, true, ""},
		{"a string", map[string]any{"allow_fractional_resource_fragmentation": "false"}, false, "must be bool, not str"},
	} {
		got, err := denyFragmentation(`resource_opts["allow_fractional_resource_fragmentation"]`, tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "allow_fractional_resource_fragmentation") {
				t.Errorf("%s: %v, want an error naming the option with %q", tc.description, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.description, got, err, tc.want)
		}
	}
}
