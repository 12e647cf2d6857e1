package tpu

import "github.com/baiagent/baiagent/proto/sdk/pluginkit"

// Configuration keys, from agent.toml [plugins.tpu]: pluginkit's
// SysfsConfig, which the rocm plugin shares.
const (
	keySysfsRoot = pluginkit.KeySysfsRoot
	keyDevRoot   = pluginkit.KeyDevRoot
	// keyDeviceMask hides chips by index ID or PCI address.
	keyDeviceMask    = pluginkit.KeyDeviceMask
	keyWatchInterval = pluginkit.KeyWatchInterval
	// keyCheckDeviceNodes marks a chip unhealthy when its /dev/accel<N> or
	// /dev/vfio/<group> node (or /dev/vfio/vfio) is missing.
	keyCheckDeviceNodes = pluginkit.KeyCheckDeviceNodes
)

type config = pluginkit.SysfsConfig

func defaultConfig() config { return pluginkit.DefaultSysfsConfig() }

// parseConfig checks every key and reports all problems at once.
func parseConfig(raw map[string]any) (config, error) { return pluginkit.ParseSysfsConfig(raw) }
