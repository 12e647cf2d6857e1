package rocm

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
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
	var problems []sdk.ConfigProblem
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		value := raw[key]
		var err error
		switch key {
		case keySysfsRoot:
			cfg.sysfsRoot, err = parseExistingDir(value)
		case keyDevRoot:
			cfg.devRoot, err = parseExistingDir(value)
		case keyDeviceMask:
			cfg.deviceMask, err = parseStringList(value)
		case keyWatchInterval:
			cfg.watchInterval, err = parseDuration(value)
		case keyCheckDeviceNodes:
			cfg.checkDeviceNodes, err = parseBool(value)
		default:
			err = fmt.Errorf("unknown key (known: %s)", strings.Join(knownKeys(), ", "))
		}
		if err != nil {
			problems = append(problems, sdk.ConfigProblem{Key: key, Reason: err.Error()})
		}
	}
	if len(problems) > 0 {
		return config{}, &sdk.ConfigError{Problems: problems}
	}
	return cfg, nil
}

func parseNonEmptyString(value any) (string, error) {
	s, ok := value.(string)
	if !ok {
		return "", fmt.Errorf("must be a string, got %T", value)
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("must not be empty")
	}
	return strings.TrimSpace(s), nil
}

// parseExistingDir resolves a relative path against the working directory,
// which the agent sets to agent.toml's directory.
func parseExistingDir(value any) (string, error) {
	s, err := parseNonEmptyString(value)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("cannot resolve %q: %w", s, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("cannot use %q: %w", s, err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("%q is not a directory", abs)
	}
	return abs, nil
}

// parseStringList takes a list of strings or, as upstream's device_mask,
// one comma-separated string.
func parseStringList(value any) ([]string, error) {
	var items []string
	switch v := value.(type) {
	case string:
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	case []any:
		for i, raw := range v {
			s, ok := raw.(string)
			if !ok || strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("item %d must be a non-empty string, got %v", i, raw)
			}
			items = append(items, strings.TrimSpace(s))
		}
	default:
		return nil, fmt.Errorf("must be a list of strings or a comma-separated string, got %T", value)
	}
	return items, nil
}

// parseBool takes a JSON boolean or, as etcd stores it, "true"/"false".
func parseBool(value any) (bool, error) {
	switch v := value.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("must be true or false, got %q", v)
		}
		return b, nil
	default:
		return false, fmt.Errorf("must be true or false, got %T", value)
	}
}

// parseDuration takes a Go duration ("30s") or a number of seconds.
func parseDuration(value any) (time.Duration, error) {
	switch v := value.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			secs, numErr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if numErr != nil {
				return 0, fmt.Errorf("must be a duration like \"30s\" or a number of seconds, got %q", v)
			}
			return secondsToDuration(secs)
		}
		if d < 10*time.Millisecond || d > 24*time.Hour {
			return 0, fmt.Errorf("must be from 10ms to 24h, got %s", d)
		}
		return d, nil
	case float64:
		return secondsToDuration(v)
	default:
		return 0, fmt.Errorf("must be a duration string or a number of seconds, got %T", value)
	}
}

func secondsToDuration(secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || secs < 0.01 || secs > 24*60*60 {
		return 0, fmt.Errorf("must be from 10ms to 24h, got %v seconds", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
