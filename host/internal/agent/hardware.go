package agent

import (
	"context"
	"time"

	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/proto/sdk"
)

// pluginHardware answers gather_hwinfo from the plugins: one entry per
// resource kind, and plugins that are not running as unavailable.
type pluginHardware struct {
	plugins *pluginhost.Host
	timeout time.Duration
}

func (p pluginHardware) HardwareHealth(ctx context.Context) ([]rpcserver.DeviceHealth, error) {
	var out []rpcserver.DeviceHealth
	for _, s := range p.plugins.Statuses() {
		if s.State == pluginhost.StateBlocked || s.State == pluginhost.StateNotAllowed {
			continue
		}
		client, desc, ok := p.plugins.Plugin(s.Name)
		if !ok {
			for _, key := range keysOrName(s) {
				out = append(out, rpcserver.DeviceHealth{DeviceKey: key, Status: "unavailable",
					StatusInfo: string(s.State) + ": " + s.Reason, Metadata: map[string]string{}})
			}
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, p.timeout)
		hw, err := client.HardwareInfo(callCtx)
		cancel()
		health := rpcserver.DeviceHealth{Status: hwStatus(hw.Status), StatusInfo: hw.StatusInfo, Metadata: hw.Metadata}
		if err != nil {
			health = rpcserver.DeviceHealth{Status: "unavailable", StatusInfo: err.Error()}
		}
		if health.Metadata == nil {
			health.Metadata = map[string]string{}
		}
		for _, key := range desc.Keys() {
			h := health
			h.DeviceKey = key
			out = append(out, h)
		}
	}
	return out, nil
}

func keysOrName(s pluginhost.Status) []string {
	if len(s.Keys) > 0 {
		return s.Keys
	}
	return []string{s.Name}
}

// hwStatus maps plugin health onto upstream's status words.
func hwStatus(h sdk.Health) string {
	switch h {
	case sdk.HealthHealthy:
		return "healthy"
	case sdk.HealthDegraded:
		return "degraded"
	case sdk.HealthUnhealthy:
		return "offline"
	default:
		return "unavailable"
	}
}
