package rocm

import (
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

const (
	fixtureMI300X = "testdata/mi300x-8gpu-2numa.txtar"
	fixtureW7900  = "testdata/radeon-pro-w7900-2gpu.txtar"
)

// waitForDevices reads watch updates until match accepts one.
func waitForDevices(t *testing.T, updates <-chan []sdk.Device, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	return plugintest.WaitForDevices(t, updates, 10*time.Second, what, match)
}
