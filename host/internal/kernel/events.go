package kernel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
)

// Run follows Docker events and reconciles every ReconcileInterval until
// ctx ends. Call Recover first: reconciliation removes containers of this
// agent that the registry does not know.
func (m *Manager) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if m.cfg.NoPeriodicReconcile {
			return
		}
		tick := time.NewTicker(m.cfg.ReconcileInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
					m.log.Warn().Err(err).Msg("kernel reconciliation")
				}
			}
		}
	}()
	defer func() { <-done }()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := m.followEvents(ctx)
		if ctx.Err() != nil {
			break
		}
		m.log.Warn().Err(err).Msg("docker event stream ended; reconnecting")
		// Events missed while disconnected are caught by reconciliation,
		// run once right away.
		if err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("kernel reconciliation")
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (m *Manager) followEvents(ctx context.Context) error {
	messages, errs := m.cfg.Engine.ContainerEvents(ctx, LabelAgentID+"="+m.cfg.AgentID)
	for {
		select {
		case msg := <-messages:
			m.handleEvent(ctx, msg)
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return err
		}
	}
}

func (m *Manager) handleEvent(ctx context.Context, msg events.Message) {
	containerID := msg.Actor.ID
	kernelID := msg.Actor.Attributes[LabelKernelID]
	switch msg.Action {
	case events.ActionOOM:
		m.mu.Lock()
		m.ooms[containerID] = true
		m.mu.Unlock()
	case events.ActionDie:
		exitCode := -1
		if v, err := strconv.Atoi(msg.Actor.Attributes["exitCode"]); err == nil {
			exitCode = v
		}
		m.mu.Lock()
		k, ok := m.reg[kernelID]
		skip := !ok || k.containerID != containerID || k.state.busy()
		m.mu.Unlock()
		if skip {
			return // unknown, or its creation or restart handles the failure
		}
		// Cleaning talks to Docker; the event stream must keep flowing.
		go func() {
			if _, err := m.clean(ctx, k, exitCode); err != nil {
				m.log.Warn().Err(err).Str("kernel", kernelID).Msg("cleaning a dead kernel")
			}
		}()
	}
}

// Reconcile is upstream's sync_container_lifecycles: kernels whose
// container is gone or stopped are cleaned, and containers of this agent
// that no kernel owns are removed with their scratch dirs.
func (m *Manager) Reconcile(ctx context.Context) error {
	// A kernel that becomes running while the list is taken may have a
	// container the list missed: only kernels running before it count.
	// A container a kernel owned before the list is not a stranger even
	// if its kernel is cleaned before the list is judged: that cleanup
	// removes it (a failed removal leaves it to the next round).
	owned := map[string]bool{}
	m.mu.Lock()
	listedAfter := m.runningGen
	legacy := false
	for _, k := range m.reg {
		if k.containerID != "" {
			owned[k.containerID] = true
			legacy = legacy || k.legacyLabels
		}
	}
	m.mu.Unlock()
	list, err := m.ownContainers(ctx, legacy)
	if err != nil {
		return err
	}
	byID := map[string]container.Summary{}
	for _, c := range list {
		byID[c.ID] = c
	}
	m.mu.Lock()
	var dead []*kernel
	for _, k := range m.reg {
		if k.containerID != "" {
			owned[k.containerID] = true
		}
		// A terminating kernel's cleanup is already under way (its
		// destroy, a die event): it removes the container itself.
		if k.state != stateRunning || k.runningGen > listedAfter {
			continue
		}
		c, ok := byID[k.containerID]
		if !ok || (c.State != container.StateRunning && c.State != container.StatePaused && c.State != container.StateRestarting) {
			dead = append(dead, k)
		}
	}
	creating := !m.recovered
	for _, k := range m.reg {
		creating = creating || k.state.busy()
	}
	m.mu.Unlock()

	var errs []error
	for _, k := range dead {
		if _, err := m.clean(ctx, k, -1); err != nil {
			errs = append(errs, err)
		}
	}
	for id, c := range byID {
		if owned[id] {
			continue
		}
		kernelID := c.Labels[LabelKernelID]
		m.mu.Lock()
		_, known := m.reg[kernelID]
		m.mu.Unlock()
		if known || creating || m.cfg.KeepContainers {
			// A creation in flight registers its kernel before it creates
			// the container, and before Recover every container looks
			// unknown; wait for the next round to judge.
			continue
		}
		m.log.Warn().Str("container", id).Str("kernel", kernelID).Msg("removing a kernel container the registry does not know")
		if err := m.removeUnknown(ctx, id, kernelID, c.Labels[LabelScratchRoot]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeUnknown removes a container and, when it is ours, its scratch dir.
func (m *Manager) removeUnknown(ctx context.Context, containerID, kernelID, scratchRoot string) error {
	err := m.cfg.Engine.ContainerRemove(ctx, containerID)
	if err != nil {
		return fmt.Errorf("remove container %s: %w", containerID, err)
	}
	if scratchRoot == "" {
		scratchRoot = m.cfg.ScratchRoot
	}
	if dirs, err := scratch.For(scratchRoot, kernelID); err == nil {
		if rec, err := scratch.ReadRecovery(dirs); err == nil && rec.AgentID == m.cfg.AgentID {
			return scratch.Remove(scratchRoot, kernelID)
		}
	}
	return nil
}
