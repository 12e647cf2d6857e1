package pluginkit

import "time"

// Configuration keys of SysfsConfig, from agent.toml [plugins.<name>].
const (
	// KeySysfsRoot is where sysfs is mounted (default /sys); tests point it
	// at a fixture tree.
	KeySysfsRoot = "sysfs-root"
	// KeyDevRoot is the directory of the device nodes (default /dev). The
	// container spec's host paths are under it.
	KeyDevRoot = "dev-root"
	// KeyDeviceMask hides devices; what a mask entry may name (index,
	// PCI address, ...) is the plugin's.
	KeyDeviceMask = "device-mask"
	// KeyWatchInterval is how often devices and their health are re-read.
	KeyWatchInterval = "watch-interval"
	// KeyCheckDeviceNodes marks a device unhealthy when one of its device
	// nodes is missing.
	KeyCheckDeviceNodes = "check-device-nodes"
)

// SysfsConfig is the configuration of a plugin that finds its devices in
// sysfs and hands their device nodes to containers (rocm, tpu).
type SysfsConfig struct {
	SysfsRoot        string
	DevRoot          string
	DeviceMask       []string
	WatchInterval    time.Duration
	CheckDeviceNodes bool
}

// SysfsConfigKeys lists SysfsConfig's keys.
func SysfsConfigKeys() []string {
	return []string{KeyCheckDeviceNodes, KeyDevRoot, KeyDeviceMask, KeySysfsRoot, KeyWatchInterval}
}

// DefaultSysfsConfig is the configuration of an empty table.
func DefaultSysfsConfig() SysfsConfig {
	return SysfsConfig{
		SysfsRoot:        "/sys",
		DevRoot:          "/dev",
		WatchInterval:    30 * time.Second,
		CheckDeviceNodes: true,
	}
}

// ParseSysfsConfig checks every key and reports all problems at once.
func ParseSysfsConfig(raw map[string]any) (SysfsConfig, error) {
	cfg := DefaultSysfsConfig()
	err := ParseKeys(raw, SysfsConfigKeys(), func(key string, value any) error {
		var err error
		switch key {
		case KeySysfsRoot:
			cfg.SysfsRoot, err = ExistingDir(value)
		case KeyDevRoot:
			cfg.DevRoot, err = ExistingDir(value)
		case KeyDeviceMask:
			cfg.DeviceMask, err = StringListOrCSV(value)
		case KeyWatchInterval:
			cfg.WatchInterval, err = Duration(value, "30s")
		case KeyCheckDeviceNodes:
			cfg.CheckDeviceNodes, err = Bool(value)
		}
		return err
	})
	if err != nil {
		return SysfsConfig{}, err
	}
	return cfg, nil
}
