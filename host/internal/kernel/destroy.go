package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// Destroy stops a kernel (SIGINT, then SIGKILL after the stop timeout) and
// cleans it up: container, scratch dir, ports and allocation. It returns
// once everything is released. reason is one the agent chose ("" is
// user-requested).
func (m *Manager) Destroy(ctx context.Context, kernelID string, reason lifecycle.Reason) (Termination, error) {
	if reason == "" {
		reason = lifecycle.UserRequested
	}
	return m.destroy(ctx, kernelID, reason, false)
}

// DestroyEcho is Destroy for destroy_kernel with the manager's own reason
// string (ROUTE_TERMINATION, say): the termination carries it verbatim, to
// be sent back unchanged, as upstream does (agent/server.py destroy_kernel).
func (m *Manager) DestroyEcho(ctx context.Context, kernelID string, reason lifecycle.Reason) (Termination, error) {
	if reason == "" {
		return m.Destroy(ctx, kernelID, "")
	}
	return m.destroy(ctx, kernelID, reason, true)
}

func (m *Manager) destroy(ctx context.Context, kernelID string, reason lifecycle.Reason, verbatim bool) (Termination, error) {
	m.mu.Lock()
	k, ok := m.reg[kernelID]
	if !ok {
		m.mu.Unlock()
		return Termination{}, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	if k.state.busy() {
		m.mu.Unlock()
		return Termination{}, fmt.Errorf("%w: %s is %s", ErrNotRunning, kernelID, k.state)
	}
	if k.stopReason == "" {
		k.stopReason, k.stopVerbatim = reason, verbatim
	}
	k.state = stateTerminating
	m.mu.Unlock()

	err := m.cfg.Engine.ContainerStop(ctx, k.containerID, m.cfg.StopTimeout)
	if err != nil && !cerrdefs.IsNotFound(err) {
		m.log.Warn().Err(err).Str("kernel", kernelID).Msg("stopping kernel container; removing it by force")
	}
	return m.clean(ctx, k, -1)
}

// clean releases everything a kernel holds. It runs once per kernel
// whoever asks (destroy, a die event, reconciliation); later callers wait
// for the first and get the same termination.
func (m *Manager) clean(ctx context.Context, k *kernel, exitCode int) (Termination, error) {
	var cleanErr error
	k.cleanOnce.Do(func() {
		ctx := context.WithoutCancel(ctx)
		m.mu.Lock()
		k.state = stateTerminating
		reason, verbatim := k.stopReason, k.stopVerbatim
		m.mu.Unlock()

		oomKilled := false
		if exitCode < 0 || reason == "" {
			if insp, err := m.cfg.Engine.ContainerInspect(ctx, k.containerID); err == nil && insp.State != nil {
				if exitCode < 0 && !insp.State.Running {
					exitCode = insp.State.ExitCode
				}
				oomKilled = insp.State.OOMKilled
			}
		}
		m.mu.Lock()
		oomKilled = oomKilled || m.ooms[k.containerID]
		delete(m.ooms, k.containerID)
		m.mu.Unlock()
		if reason == "" {
			reason = lifecycle.SelfTerminated
		}

		var errs []error
		if k.runner != nil {
			_ = k.runner.Close()
		}
		if k.containerID != "" {
			if m.cfg.BeforeRemove != nil {
				m.cfg.BeforeRemove(ctx, k.id, k.containerID)
			}
			if m.cfg.KeepContainers {
				m.log.Info().Str("kernel", k.id).Str("container", k.containerID).Msg("container kept (debug.skip-container-deletion)")
			} else {
				err := m.cfg.Engine.ContainerRemove(ctx, k.containerID)
				if err != nil && !cerrdefs.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("remove container: %w", err))
				}
			}
		}
		if err := scratch.Remove(m.cfg.ScratchRoot, k.id); err != nil {
			errs = append(errs, err)
		}
		for _, p := range k.recovery.HostPorts() {
			if p > 0 {
				if err := m.cfg.Ports.Release(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if k.allocation != nil {
			if err := m.cfg.Allocator.Free(k.allocation); err != nil {
				errs = append(errs, fmt.Errorf("free allocation: %w", err))
			}
		}
		m.mu.Lock()
		if m.reg[k.id] == k {
			delete(m.reg, k.id)
		}
		m.mu.Unlock()
		cleanErr = errors.Join(errs...)
		if cleanErr != nil {
			m.log.Error().Err(cleanErr).Str("kernel", k.id).Msg("kernel cleanup was incomplete")
		}
		t := Termination{KernelID: k.id, SessionID: k.sessionID, ContainerID: k.containerID,
			Reason: reason, ReasonVerbatim: verbatim, ExitCode: exitCode, OOMKilled: oomKilled}
		k.termination = t
		m.log.Info().Str("kernel", k.id).Str("reason", string(reason)).Int("exit_code", exitCode).Bool("oom_killed", oomKilled).Msg("kernel terminated")
		if m.cfg.OnTerminated != nil {
			m.cfg.OnTerminated(t)
		}
		close(k.cleaned)
	})
	<-k.cleaned
	return k.termination, cleanErr
}

// Logs returns the last tail lines (0: all) of a container's output.
func (m *Manager) Logs(ctx context.Context, containerID string, tail int) (string, error) {
	out, err := m.cfg.Engine.ContainerLogs(ctx, containerID, tail)
	if err != nil {
		return out, fmt.Errorf("container logs: %w", err)
	}
	return out, nil
}

// KernelLogs returns a running kernel's container log (get_logs).
func (m *Manager) KernelLogs(ctx context.Context, kernelID string) (string, error) {
	m.mu.Lock()
	k, ok := m.reg[kernelID]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	return m.Logs(ctx, k.containerID, 0)
}

func sortedKeys[V any](mp map[string]V) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
