package cli

import (
	"maps"
	"strings"
	"testing"
)

func TestKernelRunSlots(t *testing.T) {
	cases := []struct {
		description string
		flags       kernelFlags
		want        map[string]any
		wantErr     string
	}{
		{
			description: "defaults: one core and 256 MiB",
			flags:       kernelFlags{cpu: "1", mem: "256m", cuda: "0"},
			want:        map[string]any{"cpu": "1", "mem": "268435456"},
		},
		{
			description: "--slot adds any plugin's slots",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"cuda.shares=0.5", "rocm.device=2"}},
			want:        map[string]any{"cpu": "1", "mem": "1073741824", "cuda.shares": "0.5", "rocm.device": "2"},
		},
		{
			description: "a bytes slot takes a binary size",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"cuda.mem=4g"}},
			want:        map[string]any{"cpu": "1", "mem": "1073741824", "cuda.mem": "4294967296"},
		},
		{
			description: "--slot overrides --cpu and --cuda, and zero drops a slot",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "2", slotFlags: []string{"cpu=4", "cuda.device=0"}},
			want:        map[string]any{"cpu": "4", "mem": "1073741824"},
		},
		{
			description: "a flag without =",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"cuda.shares"}},
			wantErr:     `--slot "cuda.shares": want KEY=AMOUNT`,
		},
		{
			description: "an amount that is neither a number nor a size",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"tpu.device=lots"}},
			wantErr:     "--slot tpu.device=lots: want a number or a binary size",
		},
		{
			description: "a negative amount",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"cuda.shares=-1"}},
			wantErr:     "the amount is negative",
		},
		{
			description: "the same key twice",
			flags:       kernelFlags{cpu: "1", mem: "1g", cuda: "0", slotFlags: []string{"cuda.shares=1", "cuda.shares=2"}},
			wantErr:     "--slot cuda.shares is given twice",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := tc.flags.slots()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("slots %v, want %v", got, tc.want)
			}
		})
	}
}
