// Package tpu is the baiagent compute plugin for Google Cloud TPUs. It
// finds TPU chips among the PCI devices in sysfs (Google's vendor id 0x1ae0,
// generation from the device id), with their NUMA node and their device
// node: /dev/accel<N> for the accel driver or /dev/vfio/<group> for chips
// bound to vfio-pci. It describes the tpu.device slot, turns allocations
// into device nodes and libtpu's environment, and watches for chips coming
// and going. The kernel exposes no chip metrics in sysfs, so NodeMetrics
// reports none.
package tpu

import (
	"context"
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
const kindKey = "tpu"

// slotDevice is the one slot: whole devices, counted.
const slotDevice = "tpu.device"

// Option customises a Plugin.
type Option func(*Plugin)

// WithLogger sets the logger; the default discards.
func WithLogger(l hclog.Logger) Option { return func(p *Plugin) { p.logger = l } }

// Plugin implements sdk.Plugin for TPUs.
type Plugin struct {
	logger hclog.Logger

	mu         sync.Mutex
	cfg        config
	configured bool
	// driverErr is why the chips could not be listed at all.
	driverErr error
	chips     []chip
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
		"tpu_support":  strconv.FormatBool(p.configured && p.driverErr == nil && len(p.chips) > 0),
		"device_count": strconv.Itoa(len(p.chips)),
	}
	return sdk.Description{
		Name:        kindKey,
		Version:     Version,
		APIVersions: []string{sdk.APIVersion},
		Kinds: []sdk.ResourceKind{{
			Key: kindKey,
			SlotTypes: []sdk.SlotType{{
				Name: slotDevice, Kind: sdk.SlotCount,
				HumanReadableName: "TPU", Description: "Google Cloud TPU chip", DisplayUnit: "TPU",
				NumberFormat: sdk.NumberFormat{RoundLength: 0}, DisplayIcon: "tpu",
			}},
			AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly},
		}},
		UpstreamEntrypoints: []string{"ai.backend.accelerator.tpu"},
		ExtraInfo:           extra,
	}, nil
}

// Configure parses the configuration, discovers the chips and starts the
// watch loop. A node without TPUs is not a configuration error: it has zero
// devices.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	p.Close()
	chips, discoverErr := discover(cfg)
	p.mu.Lock()
	p.cfg, p.configured = cfg, true
	p.chips, p.driverErr = chips, discoverErr
	p.mu.Unlock()
	if discoverErr != nil {
		p.logger.Warn("cannot list TPU chips", "error", discoverErr)
	} else {
		p.logger.Info("tpu plugin configured", "chips", len(chips), "sysfs_root", cfg.SysfsRoot)
	}
	p.watchLoop.Start(ctx, func(ctx context.Context) { p.poll(ctx, cfg) })
	p.broadcast()
	return nil
}

// Close stops the watch loop. The plugin can be configured again.
func (p *Plugin) Close() { p.watchLoop.Stop() }

// devicesLocked renders the inventory; p.mu must be held.
func (p *Plugin) devicesLocked() []sdk.Device {
	out := make([]sdk.Device, 0, len(p.chips))
	for _, c := range p.chips {
		attrs := map[string]string{
			"pci_device_id": fmt.Sprintf("0x%04x", c.deviceID),
			"driver":        c.driver,
			"node_kind":     string(c.kind),
		}
		if c.known {
			attrs["generation"] = c.info.generation
		}
		if nodes := c.hostNodes(p.cfg.DevRoot); len(nodes) > 0 {
			attrs["device_node"] = nodes[0]
		}
		out = append(out, sdk.Device{
			ID:                c.id,
			Model:             modelName(c.info, c.known, c.deviceID),
			PCIBusID:          c.pciAddr,
			NUMANode:          c.numaNode,
			MemoryBytes:       c.info.hbmBytes,
			ProcessingUnits:   c.info.tensorCores,
			Health:            c.health,
			HealthDescription: c.reason,
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

// rediscover re-reads sysfs (hot-plug, driver binding changes, device
// nodes appearing or vanishing) and tells watchers when anything changed.
func (p *Plugin) rediscover(cfg config) {
	chips, err := discover(cfg)
	p.mu.Lock()
	changed := !slices.Equal(p.chips, chips) || !pluginkit.SameError(p.driverErr, err)
	p.chips, p.driverErr = chips, err
	p.mu.Unlock()
	if changed {
		p.logger.Info("TPU chip list changed", "chips", len(chips), "error", err)
		p.broadcast()
	}
}

// HardwareInfo reports whether chips were found and which are unhealthy.
func (p *Plugin) HardwareInfo(context.Context) (sdk.HardwareInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	meta := map[string]string{
		"sysfs_root":   p.cfg.SysfsRoot,
		"dev_root":     p.cfg.DevRoot,
		"device_count": strconv.Itoa(len(p.chips)),
	}
	switch {
	case !p.configured:
		return sdk.HardwareInfo{Status: sdk.HealthUnknown, StatusInfo: "not configured yet", Metadata: meta}, nil
	case p.driverErr != nil:
		return sdk.HardwareInfo{Status: sdk.HealthUnhealthy, StatusInfo: p.driverErr.Error(), Metadata: meta}, nil
	case len(p.chips) == 0:
		return sdk.HardwareInfo{Status: sdk.HealthUnknown, StatusInfo: "no TPU chips on this node", Metadata: meta}, nil
	}
	var bad []string
	for _, c := range p.chips {
		if c.health != sdk.HealthHealthy {
			bad = append(bad, c.id+": "+c.reason)
		}
	}
	if len(bad) > 0 {
		return sdk.HardwareInfo{Status: sdk.HealthDegraded, StatusInfo: "unhealthy TPU chips: " + strings.Join(bad, "; "), Metadata: meta}, nil
	}
	return sdk.HardwareInfo{Status: sdk.HealthHealthy, StatusInfo: fmt.Sprintf("%d TPU chips healthy", len(p.chips)), Metadata: meta}, nil
}
