package pluginkit

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

func TestRestoreShares(t *testing.T) {
	tests := []struct {
		description string
		data        map[string]string
		want        sdk.Allocation
		wantErr     string
	}{
		{"no lines", map[string]string{}, sdk.Allocation{}, ""},
		{"shares kept", map[string]string{"ROCM.DEVICE_SHARES": "0:1,1:1"},
			sdk.Allocation{"rocm.device": {"0": decimal.NewFromInt(1), "1": decimal.NewFromInt(1)}}, ""},
		{"zero shares dropped", map[string]string{"ROCM.DEVICE_SHARES": "0:0,1:1"},
			sdk.Allocation{"rocm.device": {"1": decimal.NewFromInt(1)}}, ""},
		{"empty slot dropped", map[string]string{"ROCM.DEVICE_SHARES": "0:0"}, sdk.Allocation{}, ""},
		{"other kinds ignored", map[string]string{"CUDA.DEVICE_SHARES": "0:1"}, sdk.Allocation{}, ""},
		{"bad line names the kind", map[string]string{"ROCM.DEVICE_SHARES": "0:x"}, nil, "restore rocm allocation: "},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := RestoreShares(tc.data, "rocm")
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for slot, perDevice := range tc.want {
				if len(got[slot]) != len(perDevice) {
					t.Fatalf("slot %s: got %v, want %v", slot, got[slot], perDevice)
				}
				for id, amount := range perDevice {
					if !got[slot][id].Equal(amount) {
						t.Fatalf("slot %s device %s: got %v, want %v", slot, id, got[slot][id], amount)
					}
				}
			}
		})
	}
}

func TestKnownIDs(t *testing.T) {
	tests := []struct {
		description string
		ids         []string
		want        string
	}{
		{"none", nil, "none"},
		{"one", []string{"0"}, "0"},
		{"several in order", []string{"1", "0"}, "1, 0"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if got := KnownIDs(tc.ids); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWholeDevices(t *testing.T) {
	one, zero := decimal.NewFromInt(1), decimal.Zero
	ids := []string{"0", "1", "2"}
	tests := []struct {
		description string
		alloc       sdk.Allocation
		want        []int
		wantErr     string
	}{
		{"devices in inventory order, zero amounts skipped", sdk.Allocation{"x.device": {"2": one, "0": one, "1": zero}}, []int{0, 2}, ""},
		{"empty allocation", sdk.Allocation{}, nil, ""},
		{"another plugin's slot", sdk.Allocation{"y.device": {"0": one}}, nil, `slot "y.device" does not belong to the x plugin`},
		{"unknown device", sdk.Allocation{"x.device": {"7": one}}, nil, `slot "x.device": chip "7" is not a known X chip (known: 0, 1, 2)`},
		{"fraction above one", sdk.Allocation{"x.device": {"1": decimal.RequireFromString("1.5")}}, nil, `slot "x.device": chip "1": amount 1.5 is outside 0..1`},
		{"negative amount", sdk.Allocation{"x.device": {"1": decimal.NewFromInt(-1)}}, nil, "outside 0..1"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := WholeDevices(tc.alloc, "x.device", ids, "x", "chip", "X chip")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
