package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// RestartRequest is restart_kernel: the kernel keeps its id, allocation
// and scratch dir (work/ survives); its container is replaced.
type RestartRequest struct {
	KernelID  string
	SessionID string
	// Image is the image of the new container; empty keeps the kernel's.
	Image string
	// Update applies the manager's updated_config to the request the
	// kernel was created with (upstream merges it over kconfig.dat); nil
	// changes nothing. Resource slots are kept whatever it sets: the
	// allocation does not change, as upstream reads resource.txt back.
	Update func(*CreateRequest)
}

// Restart replaces a running kernel's container: stop and remove the old
// one, then make and start a new one with the same allocation, scratch
// dir and (updated) creation request, new host ports, rewritten config
// files, and a reconnected runner. The old container's end is not the
// kernel's: no termination is reported for it.
//
// What can be checked beforehand (creation request, image, network) is,
// and a failure there leaves the kernel running as it was. If the new
// container cannot be made or its runner does not answer, the kernel is
// gone: everything it held is released, it is reported terminated with
// reason failed-to-start, and the error says so (upstream logs this and
// answers as if it had worked).
func (m *Manager) Restart(ctx context.Context, rr RestartRequest) (Created, error) {
	m.mu.Lock()
	k, ok := m.reg[rr.KernelID]
	if !ok {
		m.mu.Unlock()
		return Created{}, fmt.Errorf("%w: %s", ErrKernelNotFound, rr.KernelID)
	}
	if k.state != stateRunning {
		m.mu.Unlock()
		return Created{}, fmt.Errorf("%w: %s is %s", ErrNotRunning, rr.KernelID, k.state)
	}
	if rr.SessionID != "" && rr.SessionID != k.sessionID {
		m.mu.Unlock()
		return Created{}, fmt.Errorf("%w: kernel %s belongs to session %s, not %s", ErrInvalidRequest, rr.KernelID, k.sessionID, rr.SessionID)
	}
	dirs, allocation := k.dirs, k.allocation
	m.mu.Unlock()

	req, err := readCreationRequest(dirs)
	if err != nil {
		return Created{}, fmt.Errorf("restart kernel %s: %w", rr.KernelID, err)
	}
	slots := req.ResourceSlots
	if rr.Update != nil {
		rr.Update(&req)
	}
	req.KernelID, req.SessionID, req.ResourceSlots = k.id, k.sessionID, slots
	if rr.Image != "" {
		req.Image = rr.Image
	}
	img, err := m.inspectImage(ctx, req)
	if err != nil {
		return Created{}, fmt.Errorf("restart kernel %s: %w", rr.KernelID, err)
	}
	if err := m.checkNetwork(ctx, req.Network); err != nil {
		return Created{}, fmt.Errorf("restart kernel %s: %w", rr.KernelID, err)
	}

	m.mu.Lock()
	if k.state != stateRunning || m.reg[k.id] != k {
		m.mu.Unlock()
		return Created{}, fmt.Errorf("%w: %s is %s", ErrNotRunning, rr.KernelID, k.state)
	}
	k.state = stateRestarting
	restarted := make(chan struct{})
	k.restarted = restarted
	oldContainer, oldRunner, oldRec := k.containerID, k.runner, k.recovery
	k.runner = nil
	m.mu.Unlock()
	defer func() {
		// Whatever the outcome (running again, or terminated), the calls
		// waiting for the restart look again.
		m.mu.Lock()
		k.restarted = nil
		m.mu.Unlock()
		close(restarted)
	}()

	// From here on the caller going away must not leave the kernel half
	// replaced: the rest is bounded by the stop and runner timeouts.
	ctx = context.WithoutCancel(ctx)
	if oldRunner != nil {
		_ = oldRunner.Close()
	}
	if err := m.removeContainer(ctx, oldContainer); err != nil {
		// The old container may still run: the kernel stays as it was,
		// reconnected, rather than be half replaced (if it stopped,
		// reconciliation cleans it).
		rc, derr := m.dialRunner(oldRec.ReplInPort, oldRec.ReplOutPort)
		m.mu.Lock()
		if derr == nil {
			k.runner = rc
		}
		m.markRunningLocked(k)
		m.mu.Unlock()
		return Created{}, fmt.Errorf("restart kernel %s: %w", rr.KernelID, err)
	}
	m.mu.Lock()
	delete(m.ooms, oldContainer)
	k.containerID = ""
	m.mu.Unlock()

	var undo undoStack
	l, err := m.launch(ctx, req, img, k.createdAt, dirs, allocation, oldRec.HostPorts(), &undo)
	if err != nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if uerr := undo.run(cctx); uerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", uerr))
		}
		// The old container is gone and no new one runs: the kernel ends
		// here, giving back what it held under its old records.
		m.mu.Lock()
		k.stopReason = lifecycle.FailedToStart
		m.mu.Unlock()
		if _, cerr := m.clean(cctx, k, -1); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		m.log.Error().Err(err).Str("kernel", rr.KernelID).Msg("kernel restart failed; the kernel is terminated")
		return Created{}, fmt.Errorf("restart kernel %s: the new container failed, the kernel is terminated: %w", rr.KernelID, err)
	}

	m.mu.Lock()
	// A port the new container took over (a mapped sshd port) stays.
	oldPorts := slices.DeleteFunc(oldRec.HostPorts(), func(p int) bool { return slices.Contains(l.recovery.HostPorts(), p) })
	k.containerID, k.recovery, k.runner, k.image = l.containerID, l.recovery, l.runner, req.Image
	k.legacyLabels = false
	// As the new container's label: upstream's restart makes a new kernel
	// object whose data comes from the merged internal_data.
	k.blockServicePorts = req.BlockServicePorts
	m.markRunningLocked(k)
	info := m.infoLocked(k)
	m.mu.Unlock()
	for _, p := range oldPorts {
		if p > 0 {
			if err := m.cfg.Ports.Release(p); err != nil {
				m.log.Warn().Err(err).Int("port", p).Str("kernel", k.id).Msg("releasing a restarted kernel's old port")
			}
		}
	}
	m.log.Info().Str("kernel", k.id).Str("container", l.containerID[:12]).Str("old_container", shortID(oldContainer)).Msg("kernel restarted")
	return Created{Info: info, ContainerID: l.containerID, ServicePorts: l.recovery.ServicePorts, Attached: l.attached}, nil
}

// removeContainer stops a container (the stop timeout, then SIGKILL) and
// removes it; one that is gone already is fine.
func (m *Manager) removeContainer(ctx context.Context, containerID string) error {
	if containerID == "" {
		return nil
	}
	if err := m.cfg.Engine.ContainerStop(ctx, containerID, m.cfg.StopTimeout); err != nil && !cerrdefs.IsNotFound(err) {
		m.log.Warn().Err(err).Str("container", shortID(containerID)).Msg("stopping a kernel container; removing it by force")
	}
	err := m.cfg.Engine.ContainerRemove(ctx, containerID)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(containerID), err)
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
