package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/proto/sdk"
)

// RecoverReport says what Recover found.
type RecoverReport struct {
	// Recovered are the running kernels taken back.
	Recovered []string
	// Terminated are kernels whose container had stopped; they were
	// cleaned and reported through OnTerminated.
	Terminated []Termination
	// Removed are containers that could not be taken back (no usable
	// recovery data) and were removed.
	Removed []string
	// OrphanScratch are scratch dirs of this agent without a container.
	OrphanScratch []string
}

// Recover rebuilds the registry and the allocator's state from Docker after
// an agent restart: each running container of this agent is taken back
// with its allocation (from the plugins' RestoreAllocation, or resource.txt
// for kinds no running plugin serves), its ports are reserved again and its
// runner reconnected; stopped ones are cleaned. Call it once, before Run
// and before any Create.
func (m *Manager) Recover(ctx context.Context) (RecoverReport, error) {
	var report RecoverReport
	list, err := m.ownContainers(ctx, true)
	if err != nil {
		return report, err
	}
	knownKinds := map[string]bool{}
	for _, t := range m.cfg.Allocator.SlotTotals() {
		knownKinds[t.DeviceKind] = true
	}
	var errs []error
	var recovered []*kernel
	live := map[string]bool{}
	for _, c := range list {
		kernelID := c.Labels[LabelKernelID]
		scratchRoot := c.Labels[LabelScratchRoot]
		if scratchRoot == "" {
			scratchRoot = m.cfg.ScratchRoot
		}
		insp, err := m.cfg.Engine.ContainerInspect(ctx, c.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("inspect %s: %w", c.ID, err))
			continue
		}
		state := insp.State
		alive := state != nil && (state.Running || state.Paused || state.Restarting)
		dirs, dirErr := scratch.For(scratchRoot, kernelID)
		var rec scratch.Recovery
		if dirErr == nil {
			rec, dirErr = scratch.ReadRecovery(dirs)
		}
		if !alive || dirErr != nil {
			exitCode, reason, oomKilled := -1, lifecycle.SelfTerminated, false
			if state != nil && !alive {
				exitCode, oomKilled = state.ExitCode, state.OOMKilled
			}
			if alive {
				m.log.Error().Err(dirErr).Str("kernel", kernelID).Msg("running kernel without usable recovery data; removing it")
				reason = lifecycle.TerminatedUnknownContainer
				report.Removed = append(report.Removed, c.ID)
			}
			if err := m.removeUnknown(ctx, c.ID, kernelID, scratchRoot); err != nil {
				errs = append(errs, err)
			}
			t := Termination{KernelID: kernelID, SessionID: c.Labels[LabelSessionID], ContainerID: c.ID, Reason: reason, ExitCode: exitCode, OOMKilled: oomKilled}
			if !alive {
				report.Terminated = append(report.Terminated, t)
			}
			if m.cfg.OnTerminated != nil {
				m.cfg.OnTerminated(t)
			}
			continue
		}
		allocation, err := m.restoreAllocation(ctx, dirs, c.Labels, insp, knownKinds)
		if err != nil {
			errs = append(errs, fmt.Errorf("kernel %s: %w", kernelID, err))
		}
		k := &kernel{
			id: kernelID, sessionID: rec.SessionID, image: rec.Image, containerID: c.ID, dirs: dirs,
			allocation: allocation, recovery: rec, createdAt: rec.CreatedAt, state: stateRunning,
			cleaned: make(chan struct{}), uid: m.uid, gid: m.gid,
			blockServicePorts: c.Labels[LabelBlockServicePorts] == "1",
			legacyLabels:      c.Labels[LabelOwner] != m.cfg.AgentID,
		}
		if req, err := readCreationRequest(dirs); err == nil {
			// The user's ids, as the kernel was created; the image's
			// features are not needed for them.
			u := m.userOf(req, nil)
			k.uid, k.gid = u.uid, u.gid
			k.sessionType = req.SessionType
		}
		recovered = append(recovered, k)
		live[kernelID] = true
	}

	allocs := make([]alloc.Allocation, 0, len(recovered))
	for _, k := range recovered {
		allocs = append(allocs, k.allocation)
	}
	if err := m.cfg.Allocator.Rebuild(allocs); err != nil {
		errs = append(errs, fmt.Errorf("rebuild allocations: %w", err))
	}
	for _, k := range recovered {
		for _, p := range k.recovery.HostPorts() {
			m.cfg.Ports.Reserve(p)
		}
		rc, err := m.dialRunner(k.recovery.ReplInPort, k.recovery.ReplOutPort)
		if err != nil {
			errs = append(errs, fmt.Errorf("kernel %s runner: %w", k.id, err))
		} else {
			k.runner = rc
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := rc.Status(sctx); err != nil {
				m.log.Warn().Err(err).Str("kernel", k.id).Msg("recovered kernel's runner does not answer yet")
			}
			cancel()
		}
		m.mu.Lock()
		m.markRunningLocked(k)
		m.reg[k.id] = k
		m.mu.Unlock()
		report.Recovered = append(report.Recovered, k.id)
	}
	report.OrphanScratch = m.removeOrphanScratch(live)
	m.mu.Lock()
	m.recovered = true
	m.mu.Unlock()
	return report, errors.Join(errs...)
}

// restoreAllocation asks every running plugin what the container holds;
// kinds no running plugin serves come from resource.txt's _SHARES lines.
// Kinds the allocator has no map for are left out, so the rest still
// counts.
func (m *Manager) restoreAllocation(ctx context.Context, dirs scratch.Dirs, labels map[string]string,
	insp container.InspectResponse, knownKinds map[string]bool) (alloc.Allocation, error) {
	data, err := scratch.ReadResourceFile(dirs)
	if err != nil {
		return alloc.Allocation{}, fmt.Errorf("resource.txt: %w", err)
	}
	req := sdk.RestoreRequest{ResourceData: data, Labels: labels}
	if insp.HostConfig != nil {
		req.CpusetCpus = insp.HostConfig.CpusetCpus
		req.MemoryBytes = insp.HostConfig.Memory
	}
	result := alloc.Allocation{}
	served := map[string]bool{}
	var errs []error
	for _, rp := range m.cfg.Plugins.Running() {
		plugin, _, ok := m.cfg.Plugins.Plugin(rp.Name)
		if !ok {
			continue
		}
		restored, err := plugin.RestoreAllocation(ctx, req)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", rp.Name, err))
			continue
		}
		for _, kind := range rp.Description.Kinds {
			served[kind.Key] = true
		}
		addSlots(result, restored, knownKinds)
	}
	recorded, err := sdk.AllocationFromResourceData(data, nil)
	if err != nil {
		errs = append(errs, err)
	}
	for slot, per := range recorded {
		if !served[alloc.DeviceKindOf(slot)] {
			addSlots(result, sdk.Allocation{slot: per}, knownKinds)
		}
	}
	return result, errors.Join(errs...)
}

func addSlots(dst alloc.Allocation, src sdk.Allocation, knownKinds map[string]bool) {
	for slot, per := range src {
		kind := alloc.DeviceKindOf(slot)
		if !knownKinds[kind] || len(per) == 0 {
			continue
		}
		if dst[kind] == nil {
			dst[kind] = alloc.DeviceAllocation{}
		}
		dst[kind][slot] = per
	}
}

// removeOrphanScratch removes this agent's scratch dirs that no live
// container uses (left by a crash between creation steps).
func (m *Manager) removeOrphanScratch(live map[string]bool) []string {
	entries, err := os.ReadDir(m.cfg.ScratchRoot)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		dirs, err := scratch.For(m.cfg.ScratchRoot, e.Name())
		if err != nil {
			continue
		}
		m.mu.Lock()
		_, inRegistry := m.reg[e.Name()]
		m.mu.Unlock()
		if inRegistry {
			continue
		}
		rec, err := scratch.ReadRecovery(dirs)
		if err != nil || rec.AgentID != m.cfg.AgentID {
			continue // not ours, or not a kernel dir at all
		}
		if err := scratch.Remove(m.cfg.ScratchRoot, e.Name()); err == nil {
			removed = append(removed, dirs.Base)
		}
	}
	return removed
}
