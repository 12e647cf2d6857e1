package rocm

import (
	"time"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// Configuration keys, from agent.toml [plugins.rocm].
const (
	// keySysfsRoot is where sysfs is mounted (default /sys); tests point it
	// at a fixture tree.
	keySysfsRoot = "sysfs-root"
	// keyDevRoot is the directory of the device nodes (default /dev). The
	// container spec's host paths are under it.
	keyDevRoot = "dev-root"
	// keyDeviceMask hides devices by index ID, KFD gpu_id, PCI address or
	// unique ID (a unique ID or PCI address hides all its partitions).
	keyDeviceMask = "device-mask"
	// keyWatchInterval is how often devices and their health are re-read.
	keyWatchInterval = "watch-interval"
	// keyCheckDeviceNodes marks a device unhealthy when /dev/kfd or one of
	// its /dev/dri nodes is missing.
	keyCheckDeviceNodes = "check-device-nodes"
)

func knownKeys() []string {
	return []string{keyCheckDeviceNodes, keyDevRoot, keyDeviceMask, keySysfsRoot, keyWatchInterval}
}

type config struct {
	sysfsRoot        string
	devRoot          string
	deviceMask       []string
	watchInterval    time.Duration
	checkDeviceNodes bool
}

func defaultConfig() config {
	return config{
		sysfsRoot:        "/sys",
		devRoot:          "/dev",
		watchInterval:    30 * time.Second,
		checkDeviceNodes: true,
	}
}

// parseConfig checks every key and reports all problems at once.
func parseConfig(raw map[string]any) (config, error) {
	cfg := defaultConfig()
	err := pluginkit.ParseKeys(raw, knownKeys(), func(key string, value any) error {
		var err error
		switch key {
		case keySysfsRoot:
			cfg.sysfsRoot, err = pluginkit.ExistingDir(value)
		case keyDevRoot:
			cfg.devRoot, err = pluginkit.ExistingDir(value)
		case keyDeviceMask:
			cfg.deviceMask, err = pluginkit.StringListOrCSV(value)
		case keyWatchInterval:
			cfg.watchInterval, err = pluginkit.Duration(value, "30s")
		case keyCheckDeviceNodes:
			cfg.checkDeviceNodes, err = pluginkit.Bool(value)
		}
		return err
	})
	if err != nil {
		return config{}, err
	}
	return cfg, nil
}
