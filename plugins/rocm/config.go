package rocm

import "github.com/baiagent/baiagent/proto/sdk/pluginkit"

// Configuration keys, from agent.toml [plugins.rocm]: pluginkit's
// SysfsConfig, which the tpu plugin shares.
const (
	keySysfsRoot = pluginkit.KeySysfsRoot
	keyDevRoot   = pluginkit.KeyDevRoot
	// keyDeviceMask hides devices by index ID, KFD gpu_id, PCI address or
	// unique ID (a unique ID or PCI address hides all its partitions).
	keyDeviceMask    = pluginkit.KeyDeviceMask
	keyWatchInterval = pluginkit.KeyWatchInterval
	// keyCheckDeviceNodes marks a device unhealthy when /dev/kfd or one of
	// its /dev/dri nodes is missing.
	keyCheckDeviceNodes = pluginkit.KeyCheckDeviceNodes
)

type config = pluginkit.SysfsConfig

func defaultConfig() config { return pluginkit.DefaultSysfsConfig() }

// parseConfig checks every key and reports all problems at once.
func parseConfig(raw map[string]any) (config, error) { return pluginkit.ParseSysfsConfig(raw) }
