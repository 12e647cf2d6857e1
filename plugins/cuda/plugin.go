// Package cuda is the baiagent compute plugin for NVIDIA GPUs. It discovers
// GPUs and MIG instances through NVML (or a TOML fake), describes the
// cuda.device / cuda.shares / MIG slots, turns allocations into container
// settings, watches XID/ECC health and measures the GPUs.
package cuda

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// Version is the plugin's version.
const Version = "0.1.0"

// kindKey is the one device kind this plugin owns.
const kindKey = "cuda"

// Slot names.
const (
	slotDevice = "cuda.device"
	slotShares = "cuda.shares"
)

// migSlot names the unique slot of a MIG profile, upstream mock's form.
func migSlot(profile string) string { return slotDevice + ":" + profile + "-mig" }

// Option customises a Plugin.
type Option func(*Plugin)

// WithLogger sets the logger; the default discards.
func WithLogger(l hclog.Logger) Option { return func(p *Plugin) { p.logger = l } }

// WithDriver makes Configure use d instead of NVML or a fake-devices file.
func WithDriver(d nvmldriver.Driver) Option { return func(p *Plugin) { p.driverOverride = d } }

// WithNVMLFactory replaces how the real driver is built (tests point it at
// a library that does not exist).
func WithNVMLFactory(f func(libraryPath string) nvmldriver.Driver) Option {
	return func(p *Plugin) { p.newNVML = f }
}

// gpuEntry is one allocatable device with everything the plugin derives.
type gpuEntry struct {
	nvmldriver.GPU
	id       string
	slot     string
	busID    string // sysfs form
	numaNode int
	capacity decimal.Decimal
}

// gpuHealth is the health of one physical GPU after an event.
type gpuHealth struct {
	lastEvent time.Time
	reason    string
}

// Plugin implements sdk.Plugin for NVIDIA GPUs.
type Plugin struct {
	logger         hclog.Logger
	newNVML        func(libraryPath string) nvmldriver.Driver
	driverOverride nvmldriver.Driver

	mu            sync.Mutex
	cfg           config
	configured    bool
	driver        nvmldriver.Driver // nil when NVML could not be initialised
	client        *nvmldriver.Client
	driverSource  string
	driverVersion string
	// driverHealth/driverReason describe NVML itself: unknown when there is
	// no driver at all, unhealthy when it failed.
	driverHealth sdk.Health
	driverReason string
	attach       attachResolution
	gpus         []gpuEntry
	// unhealthy holds physical GPUs (by UUID) hit by a critical event.
	unhealthy  map[string]gpuHealth
	watch      pluginkit.Broadcaster
	healthLoop pluginkit.Background // the health monitor
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{
		logger:    hclog.NewNullLogger(),
		newNVML:   nvmldriver.NewNVML,
		cfg:       defaultConfig(),
		unhealthy: map[string]gpuHealth{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Describe reflects the configuration: before Configure it describes the
// discrete cuda.device slot only; after it, the configured mode plus one
// unique slot per MIG profile found.
func (p *Plugin) Describe(context.Context) (sdk.Description, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kind := sdk.ResourceKind{
		Key:                   kindKey,
		ExclusiveSlotPatterns: []string{slotDevice, slotShares, slotDevice + ":*-mig"},
	}
	if p.cfg.mode == modeFractional {
		kind.SlotTypes = append(kind.SlotTypes, sdk.SlotType{
			Name: slotShares, Kind: sdk.SlotCount,
			HumanReadableName: "fGPU", Description: "CUDA-capable GPU (fractional)", DisplayUnit: "fGPU",
			NumberFormat: sdk.NumberFormat{RoundLength: 2}, DisplayIcon: "gpu1",
		})
		kind.AllocMap = sdk.AllocMapSpec{
			Kind: sdk.AllocFractional, Strategy: sdk.StrategyEvenly, Quantum: p.cfg.quantum,
			MinMemory: decimal.New(1, -2), AllowFragmentation: true,
		}
	} else {
		kind.SlotTypes = append(kind.SlotTypes, sdk.SlotType{
			Name: slotDevice, Kind: sdk.SlotCount,
			HumanReadableName: "GPU", Description: "CUDA-capable GPU", DisplayUnit: "GPU",
			NumberFormat: sdk.NumberFormat{RoundLength: 0}, DisplayIcon: "gpu1",
		})
		kind.AllocMap = sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly}
	}
	var profiles []string
	for _, g := range p.gpus {
		if g.IsMig() && !slices.Contains(profiles, g.Mig.Profile) {
			profiles = append(profiles, g.Mig.Profile)
		}
	}
	slices.Sort(profiles)
	for _, profile := range profiles {
		kind.SlotTypes = append(kind.SlotTypes, sdk.SlotType{
			Name: migSlot(profile), Kind: sdk.SlotUnique,
			HumanReadableName: "GPU (MIG " + profile + ")", Description: "CUDA-capable MIG instance " + profile,
			DisplayUnit: "GPU", NumberFormat: sdk.NumberFormat{RoundLength: 0}, DisplayIcon: "gpu1",
		})
	}
	extra := map[string]string{"cuda_support": strconv.FormatBool(p.driver != nil)}
	if p.driverVersion != "" {
		extra["nvidia_version"] = p.driverVersion
	}
	return sdk.Description{
		Name:                kindKey,
		Version:             Version,
		APIVersions:         []string{sdk.APIVersion},
		Kinds:               []sdk.ResourceKind{kind},
		UpstreamEntrypoints: []string{"ai.backend.accelerator.cuda_open", "ai.backend.accelerator.cuda"},
		ExtraInfo:           extra,
	}, nil
}

// Configure parses the configuration, opens NVML (or the fake), discovers
// the GPUs and starts the health monitor. A node without an NVIDIA driver
// is not a configuration error: it ends up with zero devices and
// HardwareInfo saying why.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	driver, source, err := p.selectDriver(cfg)
	if err != nil {
		return err
	}
	attach := resolveAttach(cfg.attach, req.Agent, cfg.cdiSpecDirs)
	if !attach.usable && cfg.fakeDevices != "" {
		// Fake GPUs need no toolkit; containers just see the environment.
		attach = attachResolution{method: attachEnv, usable: true,
			reason: "fake devices; environment only because " + attach.reason}
	}
	if !attach.usable {
		p.logger.Warn("no way to attach GPUs to containers", "reason", attach.reason)
	}
	p.Close()

	p.mu.Lock()
	p.cfg = cfg
	p.configured = true
	p.driver, p.client, p.driverSource = nil, nil, source
	p.driverVersion, p.driverHealth, p.driverReason = "", sdk.HealthHealthy, ""
	p.gpus = nil
	p.unhealthy = map[string]gpuHealth{}
	p.attach = attach
	p.mu.Unlock()

	if err := driver.Init(ctx); err != nil {
		p.mu.Lock()
		if errors.Is(err, nvmldriver.ErrLibraryNotFound) {
			p.driverHealth, p.driverReason = sdk.HealthUnknown, "no NVIDIA driver: "+err.Error()
		} else {
			p.driverHealth, p.driverReason = sdk.HealthUnhealthy, "NVML initialisation failed: "+err.Error()
		}
		p.mu.Unlock()
		p.logger.Warn("NVML unavailable; no GPUs", "error", err)
		p.broadcast()
		return nil
	}
	client := nvmldriver.NewClient(driver)
	version, err := driver.DriverVersion(ctx)
	if err != nil {
		p.logger.Warn("cannot read the driver version", "error", err)
	}
	gpus, discoverErr := discover(ctx, client, cfg)

	p.mu.Lock()
	p.driver, p.client, p.driverVersion = driver, client, version
	p.gpus = gpus
	if discoverErr != nil {
		p.driverHealth, p.driverReason = sdk.HealthUnhealthy, discoverErr.Error()
	}
	p.mu.Unlock()
	p.logger.Info("cuda plugin configured", "driver", source, "devices", len(gpus), "mode", string(cfg.mode),
		"attach", string(attach.method), "attach_reason", attach.reason)
	p.healthLoop.Start(ctx, func(ctx context.Context) { p.monitor(ctx, client, cfg) })
	p.broadcast()
	return nil
}

// selectDriver picks the injected driver, the fake from fake-devices, or
// the real NVML.
func (p *Plugin) selectDriver(cfg config) (nvmldriver.Driver, string, error) {
	switch {
	case p.driverOverride != nil:
		return p.driverOverride, "injected", nil
	case cfg.fakeDevices != "":
		spec, err := nvmldriver.LoadFakeSpec(cfg.fakeDevices)
		if err != nil {
			return nil, "", &sdk.ConfigError{Problems: []sdk.ConfigProblem{{Key: keyFakeDevices, Reason: err.Error()}}}
		}
		return nvmldriver.NewFake(spec), "fake:" + cfg.fakeDevices, nil
	default:
		return p.newNVML(cfg.nvmlLibrary), "nvml", nil
	}
}

// Close stops the health monitor and releases NVML. The plugin can be
// configured again afterwards.
func (p *Plugin) Close() {
	p.healthLoop.Stop() // first: the monitor uses the driver
	p.mu.Lock()
	driver := p.driver
	p.driver, p.client = nil, nil
	p.mu.Unlock()
	if driver != nil {
		_ = driver.Shutdown(context.Background())
	}
}

// discover lists the GPUs, drops masked ones, and derives slot, NUMA node
// and capacity.
func discover(ctx context.Context, client *nvmldriver.Client, cfg config) ([]gpuEntry, error) {
	gpus, err := client.GPUs(ctx)
	if err != nil {
		return nil, fmt.Errorf("discover GPUs: %w", err)
	}
	entries := make([]gpuEntry, 0, len(gpus))
	for _, g := range gpus {
		e := gpuEntry{GPU: g, busID: nvmldriver.NormalizeBusID(g.PCIBusID), capacity: decimal.NewFromInt(1)}
		switch {
		case g.IsMig():
			e.id, e.slot = g.UUID, migSlot(g.Mig.Profile)
		case cfg.mode == modeFractional:
			e.id, e.slot = strconv.Itoa(g.Index), slotShares
			e.capacity = shareOf(g.MemoryTotal, g.MultiprocessorCount, cfg)
		default:
			e.id, e.slot = strconv.Itoa(g.Index), slotDevice
		}
		if masked(cfg.deviceMask, e) {
			continue
		}
		e.numaNode = numaNodeOf(cfg.sysfsRoot, e.busID)
		entries = append(entries, e)
	}
	return entries, nil
}

func masked(mask []string, e gpuEntry) bool {
	for _, m := range mask {
		if m == e.UUID || m == e.id || (e.IsMig() && m == e.Mig.ParentUUID) {
			return true
		}
	}
	return false
}

// shareOf is upstream mock's share: min(mem/unit-mem, SMs/unit-proc),
// rounded down to 0.01.
func shareOf(memory uint64, multiprocessors uint32, cfg config) decimal.Decimal {
	mem := decimal.NewFromUint64(memory).Div(decimal.NewFromUint64(cfg.unitMem))
	proc := decimal.NewFromInt(int64(multiprocessors)).Div(decimal.NewFromInt(int64(cfg.unitProc)))
	return decimal.Min(mem, proc).RoundDown(2)
}

// devicesLocked renders the inventory; p.mu must be held.
func (p *Plugin) devicesLocked() []sdk.Device {
	out := make([]sdk.Device, 0, len(p.gpus))
	for _, g := range p.gpus {
		d := sdk.Device{
			ID:              g.id,
			Model:           g.Name,
			UUID:            g.UUID,
			PCIBusID:        g.busID,
			NUMANode:        g.numaNode,
			MemoryBytes:     g.MemoryTotal,
			ProcessingUnits: g.MultiprocessorCount,
			Health:          sdk.HealthHealthy,
			SlotName:        g.slot,
			Capacity:        g.capacity,
			Attributes:      map[string]string{"nvml_index": strconv.Itoa(g.Index)},
		}
		if g.ComputeCapability != "" {
			d.Attributes["compute_capability"] = g.ComputeCapability
		}
		if g.IsMig() {
			d.Attributes["mig_profile"] = g.Mig.Profile
			d.Attributes["mig_parent_uuid"] = g.Mig.ParentUUID
		}
		if h, bad := p.unhealthy[physicalUUID(g)]; bad {
			d.Health, d.HealthDescription = sdk.HealthUnhealthy, h.reason
		}
		out = append(out, d)
	}
	return out
}

// physicalUUID is the UUID health and events are tracked under.
func physicalUUID(g gpuEntry) string {
	if g.IsMig() {
		return g.Mig.ParentUUID
	}
	return g.UUID
}

// ListDevices returns every unmasked GPU and MIG instance.
func (p *Plugin) ListDevices(context.Context) ([]sdk.Device, error) {
	return p.devices(), nil
}

// WatchDevices sends the current list, then the full list on every change.
func (p *Plugin) WatchDevices(ctx context.Context) (<-chan []sdk.Device, error) {
	return p.watch.Watch(ctx, p.devices), nil
}

// devices renders the inventory under p.mu.
func (p *Plugin) devices() []sdk.Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.devicesLocked()
}

// broadcast sends the current list to every watcher; p.mu must not be held.
func (p *Plugin) broadcast() { p.watch.Broadcast(p.devices) }

// HardwareInfo reports NVML's state, the attach method and unhealthy GPUs.
func (p *Plugin) HardwareInfo(context.Context) (sdk.HardwareInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	meta := map[string]string{
		"driver_source": p.driverSource,
		"device_count":  strconv.Itoa(len(p.gpus)),
	}
	if p.driverVersion != "" {
		meta["driver_version"] = p.driverVersion
	}
	if p.attach.usable {
		meta["attach_method"] = string(p.attach.method)
	}
	meta["attach_reason"] = p.attach.reason
	if !p.configured {
		return sdk.HardwareInfo{Status: sdk.HealthUnknown, StatusInfo: "not configured yet", Metadata: meta}, nil
	}
	if p.driver == nil || p.driverHealth != sdk.HealthHealthy {
		return sdk.HardwareInfo{Status: p.driverHealth, StatusInfo: p.driverReason, Metadata: meta}, nil
	}
	var bad []string
	for _, g := range p.gpus {
		if h, ok := p.unhealthy[physicalUUID(g)]; ok {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", g.id, g.UUID, h.reason))
		}
	}
	switch {
	case len(bad) > 0:
		return sdk.HardwareInfo{Status: sdk.HealthDegraded, StatusInfo: "unhealthy GPUs: " + strings.Join(bad, "; "), Metadata: meta}, nil
	case !p.attach.usable:
		return sdk.HardwareInfo{Status: sdk.HealthDegraded, StatusInfo: "GPUs cannot be attached: " + p.attach.reason, Metadata: meta}, nil
	}
	return sdk.HardwareInfo{Status: sdk.HealthHealthy, StatusInfo: fmt.Sprintf("%d GPU devices healthy", len(p.gpus)), Metadata: meta}, nil
}
