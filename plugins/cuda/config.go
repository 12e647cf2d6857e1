package cuda

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// Configuration keys, from agent.toml [plugins.cuda].
const (
	keyFakeDevices          = "fake-devices"
	keySysfsRoot            = "sysfs-root"
	keyProcfsRoot           = "procfs-root"
	keyAllocationMode       = "allocation-mode"
	keyUnitMem              = "unit-mem"
	keyUnitProc             = "unit-proc"
	keyQuantumSize          = "quantum-size"
	keyDeviceMask           = "device-mask"
	keyAttachMethod         = "attach-method"
	keyCDISpecDirs          = "cdi-spec-dirs"
	keyIgnoredXids          = "ignored-xids"
	keyHealthRecoveryPeriod = "health-recovery-period"
	keyWatchInterval        = "watch-interval"
	keyNVMLLibrary          = "nvml-library"
)

func knownKeys() []string {
	return []string{
		keyAllocationMode, keyAttachMethod, keyCDISpecDirs, keyDeviceMask, keyFakeDevices,
		keyHealthRecoveryPeriod, keyIgnoredXids, keyNVMLLibrary, keyProcfsRoot, keyQuantumSize,
		keySysfsRoot, keyUnitMem, keyUnitProc, keyWatchInterval,
	}
}

// allocationMode is whole GPUs (cuda.device) or shares (cuda.shares).
type allocationMode string

const (
	modeDiscrete   allocationMode = "discrete"
	modeFractional allocationMode = "fractional"
)

// attachMethod is how allocated GPUs reach the container.
type attachMethod string

const (
	attachAuto          attachMethod = "auto"
	attachCDI           attachMethod = "cdi"
	attachDeviceRequest attachMethod = "device-request"
	attachRuntime       attachMethod = "runtime"
	// attachEnv only sets the environment, as upstream's mock plugin: for
	// fake devices on a node without the NVIDIA container toolkit.
	attachEnv attachMethod = "env"
)

// Upstream mock's lower bounds for a share's unit.
const (
	minUnitMem  = 512 << 20
	minUnitProc = 2
)

// defaultIgnoredXids are application errors, not device faults: NVIDIA's
// k8s device plugin skips the same list.
func defaultIgnoredXids() []uint64 { return []uint64{13, 31, 43, 45, 68, 109} }

type config struct {
	fakeDevices          string
	sysfsRoot            string
	procfsRoot           string
	nvmlLibrary          string
	mode                 allocationMode
	unitMem              uint64
	unitProc             uint32
	quantum              decimal.Decimal
	deviceMask           []string
	attach               attachMethod
	cdiSpecDirs          []string
	ignoredXids          map[uint64]bool
	healthRecoveryPeriod time.Duration
	watchInterval        time.Duration
}

func defaultConfig() config {
	ignored := map[uint64]bool{}
	for _, x := range defaultIgnoredXids() {
		ignored[x] = true
	}
	return config{
		sysfsRoot:            "/sys",
		procfsRoot:           "/proc",
		mode:                 modeDiscrete,
		unitMem:              2 << 30,
		unitProc:             8,
		quantum:              decimal.New(1, -2),
		attach:               attachAuto,
		cdiSpecDirs:          []string{"/etc/cdi", "/var/run/cdi"},
		ignoredXids:          ignored,
		healthRecoveryPeriod: 5 * time.Minute,
		watchInterval:        time.Minute,
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
		var err error
		switch key {
		case keyFakeDevices:
			cfg.fakeDevices, err = parseExistingPath(value, false)
		case keySysfsRoot:
			cfg.sysfsRoot, err = parseExistingPath(value, true)
		case keyProcfsRoot:
			cfg.procfsRoot, err = parseExistingPath(value, true)
		case keyNVMLLibrary:
			cfg.nvmlLibrary, err = parseNonEmptyString(value)
		case keyAllocationMode:
			var s string
			if s, err = parseNonEmptyString(value); err == nil {
				switch m := allocationMode(s); m {
				case modeDiscrete, modeFractional:
					cfg.mode = m
				default:
					err = fmt.Errorf("must be %q or %q, got %q", modeDiscrete, modeFractional, s)
				}
			}
		case keyUnitMem:
			cfg.unitMem, err = parseUnitMem(value)
		case keyUnitProc:
			var n decimal.Decimal
			if n, err = parseNumber(value); err == nil {
				if !n.IsInteger() || n.LessThan(decimal.NewFromInt(minUnitProc)) || n.GreaterThan(decimal.NewFromInt(math.MaxUint32)) {
					err = fmt.Errorf("must be a whole number of multiprocessors, at least %d, got %s", minUnitProc, n)
				} else {
					cfg.unitProc = uint32(n.IntPart())
				}
			}
		case keyQuantumSize:
			var n decimal.Decimal
			if n, err = parseNumber(value); err == nil {
				if !n.IsPositive() || n.GreaterThan(decimal.NewFromInt(1)) {
					err = fmt.Errorf("must be greater than 0 and at most 1, got %s", n)
				} else {
					cfg.quantum = n
				}
			}
		case keyDeviceMask:
			cfg.deviceMask, err = parseStringList(value, true)
		case keyAttachMethod:
			var s string
			if s, err = parseNonEmptyString(value); err == nil {
				switch m := attachMethod(s); m {
				case attachAuto, attachCDI, attachDeviceRequest, attachRuntime, attachEnv:
					cfg.attach = m
				default:
					err = fmt.Errorf("must be one of auto, cdi, device-request, runtime, env; got %q", s)
				}
			}
		case keyCDISpecDirs:
			cfg.cdiSpecDirs, err = parseStringList(value, false)
		case keyIgnoredXids:
			cfg.ignoredXids, err = parseXidList(value)
		case keyHealthRecoveryPeriod:
			cfg.healthRecoveryPeriod, err = parseDuration(value)
		case keyWatchInterval:
			cfg.watchInterval, err = parseDuration(value)
		default:
			err = fmt.Errorf("unknown key (known: %s)", strings.Join(knownKeys(), ", "))
		}
		if err != nil {
			bad(key, "%v", err)
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

// parseExistingPath resolves a relative path against the working directory,
// which the agent sets to agent.toml's directory.
func parseExistingPath(value any, wantDir bool) (string, error) {
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
	if wantDir && !info.IsDir() {
		return "", fmt.Errorf("%q is not a directory", abs)
	}
	if !wantDir && !info.Mode().IsRegular() {
		return "", fmt.Errorf("%q is not a regular file", abs)
	}
	return abs, nil
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

// parseUnitMem takes a byte count or a binary size string ("2g", "2GiB").
func parseUnitMem(value any) (uint64, error) {
	var size decimal.Decimal
	switch v := value.(type) {
	case string:
		d, err := sdk.ParseBinarySize(v)
		if err != nil {
			return 0, fmt.Errorf("must be a size like \"2g\": %w", err)
		}
		size = d
	default:
		d, err := parseNumber(value)
		if err != nil {
			return 0, err
		}
		size = d.Truncate(0)
	}
	if size.LessThan(decimal.NewFromInt(minUnitMem)) {
		return 0, fmt.Errorf("must be at least 512m, got %s bytes", size)
	}
	if size.BigInt().BitLen() > 63 {
		return 0, fmt.Errorf("%s bytes is too large", size)
	}
	return size.BigInt().Uint64(), nil
}

// parseStringList takes a list of strings or, as upstream's device_mask,
// one comma-separated string.
func parseStringList(value any, allowCommaString bool) ([]string, error) {
	var items []string
	switch v := value.(type) {
	case string:
		if !allowCommaString {
			return nil, fmt.Errorf("must be a list of strings, got a string")
		}
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
		return nil, fmt.Errorf("must be a list of strings, got %T", value)
	}
	return items, nil
}

func parseXidList(value any) (map[uint64]bool, error) {
	list, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("must be a list of XID numbers, got %T", value)
	}
	out := map[uint64]bool{}
	for i, raw := range list {
		n, err := parseNumber(raw)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if !n.IsInteger() || n.IsNegative() || n.GreaterThan(decimal.NewFromInt(math.MaxInt32)) {
			return nil, fmt.Errorf("item %d must be a non-negative whole number, got %s", i, n)
		}
		out[uint64(n.IntPart())] = true
	}
	return out, nil
}

// parseDuration takes a Go duration ("5m") or a number of seconds.
func parseDuration(value any) (time.Duration, error) {
	var d time.Duration
	switch v := value.(type) {
	case string:
		parsed, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			secs, numErr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if numErr != nil {
				return 0, fmt.Errorf("must be a duration like \"5m\" or a number of seconds, got %q", v)
			}
			return secondsToDuration(secs)
		}
		d = parsed
	case float64:
		return secondsToDuration(v)
	default:
		return 0, fmt.Errorf("must be a duration string or a number of seconds, got %T", value)
	}
	if d < 10*time.Millisecond || d > 24*time.Hour {
		return 0, fmt.Errorf("must be from 10ms to 24h, got %s", d)
	}
	return d, nil
}

func secondsToDuration(secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || secs < 0.01 || secs > 24*60*60 {
		return 0, fmt.Errorf("must be from 10ms to 24h, got %v seconds", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
