package rocm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/baiagent/baiagent/plugins/rocm/internal/sysfsfixture"
	"github.com/baiagent/baiagent/proto/sdk"
)

const (
	fixtureMI300X = "testdata/mi300x-8gpu-2numa.txtar"
	fixtureW7900  = "testdata/radeon-pro-w7900-2gpu.txtar"
)

// extractFixture unpacks an archive into a fresh directory and returns its
// sys and dev roots.
func extractFixture(t testing.TB, archive string) (sysRoot, devRoot string) {
	t.Helper()
	dir := t.TempDir()
	if err := sysfsfixture.Extract(archive, dir); err != nil {
		t.Fatal(err)
	}
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

func devicesByID(devs []sdk.Device) map[string]sdk.Device {
	out := map[string]sdk.Device{}
	for _, d := range devs {
		out[d.ID] = d
	}
	return out
}

// waitForDevices reads watch updates until match accepts one.
func waitForDevices(t *testing.T, updates <-chan []sdk.Device, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case devs, ok := <-updates:
			if !ok {
				t.Fatalf("watch closed while waiting for %s", what)
			}
			if byID := devicesByID(devs); match(byID) {
				return byID
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
