// Package plugintest holds test helpers for compute plugins built on the
// SDK.
package plugintest

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
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

// ExtractSysfsFixture unpacks a sysfsfixture archive holding sys/ and dev/
// into a fresh directory and returns the two roots.
func ExtractSysfsFixture(t testing.TB, archive string) (sysRoot, devRoot string) {
	t.Helper()
	dir := sysfsfixture.ExtractTemp(t, archive)
	return filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
}

// SysfsFixtureConfig unpacks archive and returns a plugin configuration
// (pluginkit.SysfsConfig's keys) pointing at it, with extra keys added.
func SysfsFixtureConfig(t testing.TB, archive string, extra map[string]any) map[string]any {
	t.Helper()
	sys, dev := ExtractSysfsFixture(t, archive)
	cfg := map[string]any{pluginkit.KeySysfsRoot: sys, pluginkit.KeyDevRoot: dev}
	maps.Copy(cfg, extra)
	return cfg
}

// Configured configures p with cfg, failing the test on an error, and
// closes it when the test ends.
func Configured[P interface {
	sdk.Plugin
	Close()
}](t testing.TB, p P, cfg map[string]any) P {
	t.Helper()
	t.Cleanup(p.Close)
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{APIVersion: sdk.APIVersion, Config: cfg}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}
