// Package rocm is the baiagent compute plugin for AMD GPUs. It discovers
// GPUs and their compute partitions from sysfs (the KFD topology, DRM
// nodes, PCI devices), describes the rocm.device slot, turns allocations
// into device nodes and environment for the container, watches for devices
// coming and going and measures the GPUs through sysfs and hwmon. It needs
// no ROCm libraries, so it builds with CGO_ENABLED=0.
package rocm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// Version is the plugin's version.
const Version = "0.1.0"

// kindKey is the one device kind this plugin owns.
const kindKey = "rocm"

// slotDevice is the one slot: whole devices, counted.
const slotDevice = "rocm.device"

// Option customises a Plugin.
type Option func(*Plugin)

// WithLogger sets the logger; the default discards.
func WithLogger(l hclog.Logger) Option { return func(p *Plugin) { p.logger = l } }

// Plugin implements sdk.Plugin for AMD GPUs.
type Plugin struct {
	logger hclog.Logger

	mu         sync.Mutex
	cfg        config
	configured bool
	// driverErr is why there are no devices at all (no KFD topology).
	driverErr error
	gpus      []gpu
	watch     pluginkit.Broadcaster
	watchLoop pluginkit.Background
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{
		logger: hclog.NewNullLogger(),
		cfg:    defaultConfig(),
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Describe works before and after Configure: the slot never changes.
func (p *Plugin) Describe(context.Context) (sdk.Description, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	extra := map[string]string{
		"rocm_support": strconv.FormatBool(p.configured && p.driverErr == nil),
		"device_count": strconv.Itoa(len(p.gpus)),
	}
	return sdk.Description{
		Name:        kindKey,
		Version:     Version,
		APIVersions: []string{sdk.APIVersion},
		Kinds: []sdk.ResourceKind{{
			Key: kindKey,
			SlotTypes: []sdk.SlotType{{
				Name: slotDevice, Kind: sdk.SlotCount,
				HumanReadableName: "ROCm GPU", Description: "ROCm-capable GPU", DisplayUnit: "GPU",
				NumberFormat: sdk.NumberFormat{RoundLength: 0}, DisplayIcon: "rocm",
			}},
			AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly},
		}},
		UpstreamEntrypoints: []string{"ai.backend.accelerator.rocm"},
		ExtraInfo:           extra,
	}, nil
}

// Configure parses the configuration, discovers the devices and starts the
// watch loop. A node without the amdgpu driver is not a configuration
// error: it has zero devices and HardwareInfo says why.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	p.Close()
	gpus, discoverErr := discover(cfg)
	p.mu.Lock()
	p.cfg, p.configured = cfg, true
	p.gpus, p.driverErr = gpus, discoverErr
	p.mu.Unlock()
	if discoverErr != nil {
		p.logger.Warn("no ROCm devices", "error", discoverErr)
	} else {
		p.logger.Info("rocm plugin configured", "devices", len(gpus), "sysfs_root", cfg.SysfsRoot)
	}
	p.watchLoop.Start(ctx, func(ctx context.Context) { p.poll(ctx, cfg) })
	p.broadcast()
	return nil
}

// Close stops the watch loop. The plugin can be configured again.
func (p *Plugin) Close() { p.watchLoop.Stop() }

// devicesLocked renders the inventory; p.mu must be held.
func (p *Plugin) devicesLocked() []sdk.Device {
	out := make([]sdk.Device, 0, len(p.gpus))
	for _, g := range p.gpus {
		attrs := map[string]string{
			"kfd_node":         strconv.Itoa(g.kfdNode),
			"gpu_id":           strconv.FormatUint(g.gpuID, 10),
			"gfx_target":       g.gfx,
			"pci_device_id":    fmt.Sprintf("0x%04x", g.deviceID),
			"drm_render_minor": strconv.Itoa(g.renderMinor),
		}
		if g.cardMinor >= 0 {
			attrs["drm_card_minor"] = strconv.Itoa(g.cardMinor)
		}
		if g.partitions > 1 {
			attrs["partition"] = strconv.Itoa(g.partition)
			attrs["partition_count"] = strconv.Itoa(g.partitions)
		}
		if g.computePartition != "" {
			attrs["compute_partition"] = g.computePartition
		}
		out = append(out, sdk.Device{
			ID:                g.id,
			Model:             g.model,
			UUID:              g.uuid(),
			PCIBusID:          g.pciAddr,
			NUMANode:          g.numaNode,
			MemoryBytes:       g.memBytes,
			ProcessingUnits:   g.computeUnits,
			Health:            g.health,
			HealthDescription: g.reason,
			Attributes:        attrs,
			SlotName:          slotDevice,
			Capacity:          decimal.NewFromInt(1),
		})
	}
	return out
}

// ListDevices returns every unmasked device.
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

// poll re-reads the devices every watch interval until ctx ends.
func (p *Plugin) poll(ctx context.Context, cfg config) {
	pluginkit.Poll(ctx, cfg.WatchInterval, func() { p.rediscover(cfg) })
}

// rediscover re-reads sysfs (hot-plug, driver load or unload, partition
// mode changes, device nodes appearing or vanishing) and tells watchers
// when anything changed.
func (p *Plugin) rediscover(cfg config) {
	gpus, err := discover(cfg)
	p.mu.Lock()
	changed := !slices.Equal(p.gpus, gpus) || !pluginkit.SameError(p.driverErr, err)
	p.gpus, p.driverErr = gpus, err
	p.mu.Unlock()
	if changed {
		p.logger.Info("ROCm device list changed", "devices", len(gpus), "error", err)
		p.broadcast()
	}
}

// HardwareInfo reports the driver state and unhealthy devices.
func (p *Plugin) HardwareInfo(context.Context) (sdk.HardwareInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	meta := map[string]string{
		"sysfs_root":   p.cfg.SysfsRoot,
		"dev_root":     p.cfg.DevRoot,
		"device_count": strconv.Itoa(len(p.gpus)),
	}
	if !p.configured {
		return sdk.HardwareInfo{Status: sdk.HealthUnknown, StatusInfo: "not configured yet", Metadata: meta}, nil
	}
	if p.driverErr != nil {
		status := sdk.HealthUnhealthy
		if errors.Is(p.driverErr, errNoKFD) {
			status = sdk.HealthUnknown
		}
		return sdk.HardwareInfo{Status: status, StatusInfo: p.driverErr.Error(), Metadata: meta}, nil
	}
	var bad []string
	for _, g := range p.gpus {
		if g.health != sdk.HealthHealthy {
			bad = append(bad, g.id+": "+g.reason)
		}
	}
	if len(bad) > 0 {
		return sdk.HardwareInfo{Status: sdk.HealthDegraded, StatusInfo: "unhealthy GPUs: " + strings.Join(bad, "; "), Metadata: meta}, nil
	}
	return sdk.HardwareInfo{Status: sdk.HealthHealthy, StatusInfo: fmt.Sprintf("%d ROCm devices healthy", len(p.gpus)), Metadata: meta}, nil
}
