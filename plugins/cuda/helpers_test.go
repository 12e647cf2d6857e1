package cuda

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

const (
	fixture8GPU    = "testdata/nvml-8xA100-2numa.toml"
	fixtureSysfs   = "testdata/sysfs"
	fixtureDev     = "../../configs/fixtures/cuda-2xA100.toml"
	fixtureDevSys  = "../../configs/fixtures/sysfs-2xA100"
	dockerWithNV   = "28.1.1"
	migParentIndex = 5
)

// dockerAgent is a Docker engine with the nvidia runtime.
func dockerAgent() sdk.AgentInfo {
	return sdk.AgentInfo{AgentID: "i-test", DockerVersion: dockerWithNV, DockerRuntimes: []string{"runc", "nvidia"}}
}

// fixtureConfig points the plugin at the 8-GPU fake and its sysfs tree.
func fixtureConfig(extra map[string]any) map[string]any {
	cfg := map[string]any{keyFakeDevices: fixture8GPU, keySysfsRoot: fixtureSysfs}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

func configuredPlugin(t testing.TB, cfg map[string]any, agent sdk.AgentInfo, opts ...Option) *Plugin {
	t.Helper()
	p := New(opts...)
	t.Cleanup(p.Close)
	if err := p.Configure(context.Background(), sdk.ConfigureRequest{APIVersion: sdk.APIVersion, Config: cfg, Agent: agent}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

// injectedFake builds a fake driver from the 8-GPU fixture for tests that
// inject events.
func injectedFake(t testing.TB) (*nvmldriver.Fake, nvmldriver.FakeSpec) {
	t.Helper()
	spec, err := nvmldriver.LoadFakeSpec(fixture8GPU)
	if err != nil {
		t.Fatal(err)
	}
	return nvmldriver.NewFake(spec), spec
}

func devicesByID(devs []sdk.Device) map[string]sdk.Device { return plugintest.DevicesByID(devs) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// waitForDevices reads watch updates until match accepts one.
func waitForDevices(t *testing.T, updates <-chan []sdk.Device, timeout time.Duration, what string, match func(map[string]sdk.Device) bool) map[string]sdk.Device {
	t.Helper()
	return plugintest.WaitForDevices(t, updates, timeout, what, match)
}

func asConfigError(err error, target **sdk.ConfigError) bool { return errors.As(err, target) }
