package cuda

import (
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
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
	err := pluginkit.ParseKeys(raw, knownKeys(), func(key string, value any) error {
		var err error
		switch key {
		case keyFakeDevices:
			cfg.fakeDevices, err = pluginkit.ExistingFile(value)
		case keySysfsRoot:
			cfg.sysfsRoot, err = pluginkit.ExistingDir(value)
		case keyProcfsRoot:
			cfg.procfsRoot, err = pluginkit.ExistingDir(value)
		case keyNVMLLibrary:
			cfg.nvmlLibrary, err = pluginkit.NonEmptyString(value)
		case keyAllocationMode:
			var s string
			if s, err = pluginkit.NonEmptyString(value); err == nil {
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
			if n, err = pluginkit.Number(value); err == nil {
				if !n.IsInteger() || n.LessThan(decimal.NewFromInt(minUnitProc)) || n.GreaterThan(decimal.NewFromInt(math.MaxUint32)) {
					err = fmt.Errorf("must be a whole number of multiprocessors, at least %d, got %s", minUnitProc, n)
				} else {
					cfg.unitProc = uint32(n.IntPart())
				}
			}
		case keyQuantumSize:
			var n decimal.Decimal
			if n, err = pluginkit.Number(value); err == nil {
				if !n.IsPositive() || n.GreaterThan(decimal.NewFromInt(1)) {
					err = fmt.Errorf("must be greater than 0 and at most 1, got %s", n)
				} else {
					cfg.quantum = n
				}
			}
		case keyDeviceMask:
			cfg.deviceMask, err = pluginkit.StringListOrCSV(value)
		case keyAttachMethod:
			var s string
			if s, err = pluginkit.NonEmptyString(value); err == nil {
				switch m := attachMethod(s); m {
				case attachAuto, attachCDI, attachDeviceRequest, attachRuntime, attachEnv:
					cfg.attach = m
				default:
					err = fmt.Errorf("must be one of auto, cdi, device-request, runtime, env; got %q", s)
				}
			}
		case keyCDISpecDirs:
			cfg.cdiSpecDirs, err = pluginkit.StringList(value)
		case keyIgnoredXids:
			cfg.ignoredXids, err = parseXidList(value)
		case keyHealthRecoveryPeriod:
			cfg.healthRecoveryPeriod, err = pluginkit.Duration(value, "5m")
		case keyWatchInterval:
			cfg.watchInterval, err = pluginkit.Duration(value, "5m")
		}
		return err
	})
	if err != nil {
		return config{}, err
	}
	return cfg, nil
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
		d, err := pluginkit.Number(value)
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

func parseXidList(value any) (map[uint64]bool, error) {
	list, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("must be a list of XID numbers, got %T", value)
	}
	out := map[uint64]bool{}
	for i, raw := range list {
		n, err := pluginkit.Number(raw)
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
