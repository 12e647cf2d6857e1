package plugintest

import (
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
)

func TestWaitForDevices(t *testing.T) {
	tests := []struct {
		description string
		lists       [][]sdk.Device
		wantIDs     int
	}{
		{"first list matches", [][]sdk.Device{{{ID: "a"}, {ID: "b"}}}, 2},
		{"skips lists that do not match", [][]sdk.Device{{{ID: "a"}}, {{ID: "a"}, {ID: "b"}}}, 2},
		{"duplicate IDs collapse", [][]sdk.Device{{{ID: "a"}, {ID: "a"}, {ID: "b"}}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			ch := make(chan []sdk.Device, len(tc.lists))
			for _, l := range tc.lists {
				ch <- l
			}
			got := WaitForDevices(t, ch, 5*time.Second, "a and b", func(m map[string]sdk.Device) bool {
				_, ok := m["b"]
				return ok
			})
			if len(got) != tc.wantIDs {
				t.Fatalf("got %v, want %d devices", got, tc.wantIDs)
			}
		})
	}
}
