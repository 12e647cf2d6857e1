package cpu

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
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

// parseConfig checks every key and reports all problems at once, so an
// operator fixes agent.toml in one go.
func parseConfig(raw map[string]any) (config, error) {
	cfg := defaultConfig()
	var problems []sdk.ConfigProblem
	bad := func(key, format string, args ...any) {
		problems = append(problems, sdk.ConfigProblem{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		value := raw[key]
		switch key {
		case keySysfsRoot, keyProcfsRoot, keyCgroupRoot:
			dir, err := parseRoot(value)
			if err != nil {
				bad(key, "%v", err)
				continue
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
			n, err := parseNumber(value)
			switch {
			case err != nil:
				bad(key, "%v", err)
			case !n.IsInteger() || n.LessThan(decimal.NewFromInt(minCPUOvercommit)) || n.GreaterThan(decimal.NewFromInt(maxCPUOvercommit)):
				bad(key, "must be a whole number from %d to %d, got %s", minCPUOvercommit, maxCPUOvercommit, n)
			default:
				cfg.cpuOvercommit = int(n.IntPart())
			}
		case keyMemOvercommit:
			n, err := parseNumber(value)
			switch {
			case err != nil:
				bad(key, "%v", err)
			case n.LessThan(decimal.NewFromInt(1)):
				bad(key, "must be at least 1, got %s", n)
			case n.GreaterThan(decimal.NewFromInt(1000)):
				bad(key, "must be at most 1000, got %s", n)
			default:
				cfg.memOvercommit = n
			}
		case keyWatchInterval:
			d, err := parseInterval(value)
			if err != nil {
				bad(key, "%v", err)
				continue
			}
			cfg.watchInterval = d
		default:
			bad(key, "unknown key (known: %s)", strings.Join([]string{
				keySysfsRoot, keyProcfsRoot, keyCgroupRoot, keyCPUOvercommit, keyMemOvercommit, keyWatchInterval,
			}, ", "))
		}
	}
	if len(problems) > 0 {
		return config{}, &sdk.ConfigError{Problems: problems}
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

// parseNumber takes a JSON number or a numeric string (etcd stores strings).
func parseNumber(value any) (decimal.Decimal, error) {
	switch v := value.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return decimal.Zero, fmt.Errorf("must be a finite number")
		}
		return decimal.NewFromFloat(v), nil
	case string:
		d, err := decimal.NewFromString(strings.TrimSpace(v))
		if err != nil {
			return decimal.Zero, fmt.Errorf("must be a number, got %q", v)
		}
		return d, nil
	default:
		return decimal.Zero, fmt.Errorf("must be a number, got %T", value)
	}
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
