package rocm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

const (
	fixtureMI300X = "testdata/mi300x-8gpu-2numa.txtar"
	fixtureW7900  = "testdata/radeon-pro-w7900-2gpu.txtar"
)

// extractFixture unpacks an archive into a fresh directory and returns its
// sys and dev roots.
func extractFixture(t testing.TB, archive string) (sysRoot, devRoot string) {
	t.Helper()
	dir := sysfsfixture.ExtractTemp(t, archive)
	return filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
}

// fixtureConfig unpacks archive and returns a config pointing at it.
func fixtureConfig(t testing.TB, archive string, extra map[string]any) map[string]any {
	t.Helper()
	sys, dev := extractFixture(t, archive)
	cfg := map[string]any{keySysfsRoot: sys, keyDevRoot: dev}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

func configuredPlugin(t testing.TB, cfg map[string]any) *Plugin {
	t.Helper()
	p := New()
	t.Cleanup(p.Close)
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{APIVersion: sdk.APIVersion, Config: cfg}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

func devicesByID(devs []sdk.Device) map[string]sdk.Device { return plugintest.DevicesByID(devs) }

// waitForDevices reads watch updates until match accepts one.
func waitForDevices(t *testing.T, updates <-chan []sdk.Device, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	return plugintest.WaitForDevices(t, updates, 10*time.Second, what, match)
}
