package tpu

import (
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

const (
	fixtureV4  = "testdata/tpu-v4-4chip.txtar"
	fixtureV5e = "testdata/tpu-v5e-8chip-vfio.txtar"
)

// waitForDevices reads watch updates until match accepts one.
func waitForDevices(t *testing.T, updates <-chan []sdk.Device, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	return plugintest.WaitForDevices(t, updates, 10*time.Second, what, match)
}
