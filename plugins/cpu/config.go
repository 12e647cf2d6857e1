package cpu

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// Configuration keys, from agent.toml [plugins.cpu].
const (
	keySysfsRoot     = "sysfs-root"
	keyProcfsRoot    = "procfs-root"
	keyCgroupRoot    = "cgroup-root"
	keyCPUOvercommit = "cpu-overcommit-factor"
	keyMemOvercommit = "mem-overcommit-factor"
	keyWatchInterval = "watch-interval"
)

// Upstream's BACKEND_CPU_OVERCOMMIT_FACTOR must be 1..10.
const (
	minCPUOvercommit = 1
	maxCPUOvercommit = 10
)

type config struct {
	sysfsRoot     string
	procfsRoot    string
	cgroupRoot    string
	cpuOvercommit int
	memOvercommit decimal.Decimal
	watchInterval time.Duration
}

func defaultConfig() config {
	return config{
		sysfsRoot:     "/sys",
		procfsRoot:    "/proc",
		cgroupRoot:    "/sys/fs/cgroup",
		cpuOvercommit: 1,
		memOvercommit: decimal.NewFromInt(1),
		watchInterval: 30 * time.Second,
	}
}

// knownKeys lists the keys in the order an unknown-key problem names them.
func knownKeys() []string {
	return []string{keySysfsRoot, keyProcfsRoot, keyCgroupRoot, keyCPUOvercommit, keyMemOvercommit, keyWatchInterval}
}

// parseConfig checks every key and reports all problems at once, so an
// operator fixes agent.toml in one go.
func parseConfig(raw map[string]any) (config, error) {
	cfg := defaultConfig()
	err := pluginkit.ParseKeys(raw, knownKeys(), func(key string, value any) error {
		switch key {
		case keySysfsRoot, keyProcfsRoot, keyCgroupRoot:
			dir, err := parseRoot(value)
			if err != nil {
				return err
			}
			switch key {
			case keySysfsRoot:
				cfg.sysfsRoot = dir
			case keyProcfsRoot:
				cfg.procfsRoot = dir
			default:
				cfg.cgroupRoot = dir
			}
		case keyCPUOvercommit:
			n, err := pluginkit.Number(value)
			switch {
			case err != nil:
				return err
			case !n.IsInteger() || n.LessThan(decimal.NewFromInt(minCPUOvercommit)) || n.GreaterThan(decimal.NewFromInt(maxCPUOvercommit)):
				return fmt.Errorf("must be a whole number from %d to %d, got %s", minCPUOvercommit, maxCPUOvercommit, n)
			}
			cfg.cpuOvercommit = int(n.IntPart())
		case keyMemOvercommit:
			n, err := pluginkit.Number(value)
			switch {
			case err != nil:
				return err
			case n.LessThan(decimal.NewFromInt(1)):
				return fmt.Errorf("must be at least 1, got %s", n)
			case n.GreaterThan(decimal.NewFromInt(1000)):
				return fmt.Errorf("must be at most 1000, got %s", n)
			}
			cfg.memOvercommit = n
		case keyWatchInterval:
			d, err := parseInterval(value)
			if err != nil {
				return err
			}
			cfg.watchInterval = d
		}
		return nil
	})
	if err != nil {
		return config{}, err
	}
	return cfg, nil
}

func parseRoot(value any) (string, error) {
	s, ok := value.(string)
	if !ok {
		return "", fmt.Errorf("must be a directory path string, got %T", value)
	}
	if s == "" || !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("must be an absolute path, got %q", s)
	}
	info, err := os.Stat(s)
	if err != nil {
		return "", fmt.Errorf("cannot use %q: %w", s, err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("%q is not a directory", s)
	}
	return s, nil
}

// parseInterval takes a Go duration ("30s", "1m") or a number of seconds.
func parseInterval(value any) (time.Duration, error) {
	var secs float64
	switch v := value.(type) {
	case string:
		if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil {
			secs = d.Seconds()
			break
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("must be a duration like \"30s\" or a number of seconds, got %q", v)
		}
		secs = n
	case float64:
		secs = v
	default:
		return 0, fmt.Errorf("must be a duration string or a number of seconds, got %T", value)
	}
	const maxSeconds = 24 * 60 * 60
	if math.IsNaN(secs) || secs < 0.1 || secs > maxSeconds {
		return 0, fmt.Errorf("must be from 100ms to 24h, got %v seconds", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
