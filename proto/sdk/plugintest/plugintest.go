// Package plugintest holds test helpers for compute plugins built on the
// SDK.
package plugintest

import (
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
)

// DevicesByID indexes a device list by device ID.
func DevicesByID(devs []sdk.Device) map[string]sdk.Device {
	out := map[string]sdk.Device{}
	for _, d := range devs {
		out[d.ID] = d
	}
	return out
}

// WaitForDevices reads watch updates until match accepts one and returns
// it by ID. It fails the test when the channel closes first or timeout
// passes; what names the awaited state in the failure.
func WaitForDevices(t testing.TB, updates <-chan []sdk.Device, timeout time.Duration, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case devs, ok := <-updates:
			if !ok {
				t.Fatalf("watch closed while waiting for %s", what)
			}
			if byID := DevicesByID(devs); match(byID) {
				return byID
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
