package cuda

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
)

// eventWaitSlice bounds one NVML event wait. The real wait blocks in C and
// cannot see ctx, and Close waits for the monitor, so this is how late a
// stop can be: go-plugin kills a plugin that takes 2 s to exit.
const eventWaitSlice = 200 * time.Millisecond

// monitor waits for XID/ECC events, recovers GPUs whose last critical
// event is older than the recovery period, and re-discovers devices every
// watch interval. It returns when ctx ends.
func (p *Plugin) monitor(ctx context.Context, client *nvmldriver.Client, cfg config) {
	driver := client.Driver()
	eventsSupported := true
	nextDiscovery := time.Now().Add(cfg.watchInterval)
	for {
		wait := min(eventWaitSlice, time.Until(nextDiscovery))
		if next, ok := p.nextRecovery(cfg.healthRecoveryPeriod); ok {
			wait = min(wait, time.Until(next))
		}
		wait = max(wait, time.Millisecond)
		if eventsSupported {
			ev, ok, err := driver.WaitEvent(ctx, wait)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, nvmldriver.ErrNotSupported):
				p.logger.Warn("GPU health events are not supported; health stays as discovered", "error", err)
				eventsSupported = false
			case err != nil:
				p.logger.Error("waiting for GPU events failed", "error", err)
				if !sleep(ctx, wait) {
					return
				}
			case ok:
				p.handleEvent(ev, cfg)
			}
		} else if !sleep(ctx, wait) {
			return
		}
		p.recoverExpired(cfg.healthRecoveryPeriod)
		if !time.Now().Before(nextDiscovery) {
			p.rediscover(ctx, client, cfg)
			nextDiscovery = time.Now().Add(cfg.watchInterval)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// critical says whether an event makes a GPU unhealthy, and why.
func critical(ev nvmldriver.Event, ignoredXids map[uint64]bool) (string, bool) {
	switch ev.Kind {
	case nvmldriver.EventXid:
		if ignoredXids[ev.Xid] {
			return "", false
		}
		return fmt.Sprintf("XID %d", ev.Xid), true
	case nvmldriver.EventDoubleBitECC:
		return "double-bit ECC error", true
	default:
		// Single-bit ECC errors are corrected by the hardware.
		return "", false
	}
}

// handleEvent marks the GPU hit by a critical event unhealthy. An event
// that names no known GPU marks them all, since any could be at fault.
func (p *Plugin) handleEvent(ev nvmldriver.Event, cfg config) {
	what, isCritical := critical(ev, cfg.ignoredXids)
	if !isCritical {
		p.logger.Info("ignoring GPU event", "kind", ev.Kind.String(), "xid", ev.Xid, "uuid", ev.DeviceUUID)
		return
	}
	now := time.Now()
	p.mu.Lock()
	var targets []string
	for _, g := range p.gpus {
		uuid := physicalUUID(g)
		if (ev.DeviceUUID == "" || ev.DeviceUUID == uuid || ev.DeviceUUID == g.UUID) && !slices.Contains(targets, uuid) {
			targets = append(targets, uuid)
		}
	}
	if len(targets) == 0 && ev.DeviceUUID != "" {
		// An event on a masked or vanished GPU: nothing we hand out.
		p.mu.Unlock()
		p.logger.Info("GPU event on a device not handed out", "uuid", ev.DeviceUUID, "event", what)
		return
	}
	reason := fmt.Sprintf("%s at %s; recovers after %s without errors", what, now.UTC().Format(time.RFC3339), cfg.healthRecoveryPeriod)
	for _, uuid := range targets {
		p.unhealthy[uuid] = gpuHealth{lastEvent: now, reason: reason}
	}
	p.mu.Unlock()
	p.logger.Warn("GPU marked unhealthy", "uuids", targets, "event", what)
	p.broadcast()
}

// nextRecovery is when the earliest unhealthy GPU recovers.
func (p *Plugin) nextRecovery(period time.Duration) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next time.Time
	for _, h := range p.unhealthy {
		at := h.lastEvent.Add(period)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// recoverExpired marks GPUs healthy again after a quiet recovery period:
// transient XIDs must not retire a GPU for good (k8s-device-plugin#1014).
func (p *Plugin) recoverExpired(period time.Duration) {
	now := time.Now()
	p.mu.Lock()
	var recovered []string
	for uuid, h := range p.unhealthy {
		if now.Sub(h.lastEvent) >= period {
			delete(p.unhealthy, uuid)
			recovered = append(recovered, uuid)
		}
	}
	p.mu.Unlock()
	if len(recovered) > 0 {
		p.logger.Info("GPU healthy again", "uuids", recovered)
		p.broadcast()
	}
}

// rediscover re-reads the devices (hot-plug, MIG reconfiguration) and
// tells watchers when anything changed.
func (p *Plugin) rediscover(ctx context.Context, client *nvmldriver.Client, cfg config) {
	gpus, err := discover(ctx, client, cfg)
	if err != nil {
		p.logger.Error("re-discovering GPUs failed; keeping the last list", "error", err)
		return
	}
	p.mu.Lock()
	changed := !slices.EqualFunc(p.gpus, gpus, sameEntry)
	if changed {
		p.gpus = gpus
	}
	p.mu.Unlock()
	if changed {
		p.logger.Info("GPU list changed", "devices", len(gpus))
		p.broadcast()
	}
}

func sameEntry(a, b gpuEntry) bool {
	return a.id == b.id && a.UUID == b.UUID && a.slot == b.slot && a.numaNode == b.numaNode &&
		a.capacity.Equal(b.capacity) && a.MemoryTotal == b.MemoryTotal && a.Name == b.Name
}
