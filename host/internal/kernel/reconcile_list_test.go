package kernel_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// listCounter is an engine that records the label filter of every
// ContainerList.
type listCounter struct {
	kernel.Engine
	mu     sync.Mutex
	labels []string
}

func (l *listCounter) ContainerList(ctx context.Context, label string) ([]container.Summary, error) {
	l.mu.Lock()
	l.labels = append(l.labels, label)
	l.mu.Unlock()
	return l.Engine.ContainerList(ctx, label)
}

func (l *listCounter) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.labels
	l.labels = nil
	return got
}

// The periodic sync lists the agent's containers by ai.backend.owner alone
// (what upstream's enumerate_containers in agent/docker/agent.py matches
// on, and what every container of this build carries): a second list by
// ai.backend.agent-id, for containers of older builds whose owner label
// held the user id, is made at Recover, and at a sync only while such a
// kernel is in the registry, which that list keeps from being taken for
// gone. Each list costs Docker's encoding and our decoding of every
// kernel's labels, so a second one doubled the idle agent's largest cost
// (issue 20).
func TestReconcileListsLegacyLabelsOnlyWhenNeeded(t *testing.T) {
	e, fake := newFakeEnv(t)
	counter := &listCounter{Engine: fake}
	e.engine = counter
	ctx := context.Background()
	owner := kernel.LabelOwner + "=" + e.agentID
	both := []string{owner, kernel.LabelAgentID + "=" + e.agentID}

	// An older build's kernel: its owner label is the user's id.
	legacy := fakeRecoverable(t, e, fake, map[string]string{
		kernel.LabelOwner: "user-1", kernel.LabelAgentID: e.agentID,
		kernel.LabelKernelID: "k-legacy", kernel.LabelSessionID: "sess-k-legacy",
	}, e.portMin+90)

	m := e.manager(t, func(cfg *kernel.Config) { cfg.NoPeriodicReconcile = true })
	// Nothing answers on the runner's ports: Recover waits for it until
	// this context ends, and keeps the kernel.
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	report, err := m.Recover(rctx)
	cancel()
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	if !slices.Equal(report.Recovered, []string{"k-legacy"}) {
		t.Fatalf("recovered %v, want k-legacy", report.Recovered)
	}
	if got := counter.take(); !slices.Equal(got, both) {
		t.Errorf("Recover listed by %v, want %v", got, both)
	}

	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter.take(); !slices.Equal(got, both) {
		t.Errorf("a sync with an older build's kernel listed by %v, want %v", got, both)
	}
	if insp, err := fake.ContainerInspect(ctx, legacy); err != nil || !insp.State.Running {
		t.Fatalf("the older build's kernel was taken for gone: %+v, %v", insp.State, err)
	}
	if _, ok := e.termination("k-legacy"); ok {
		t.Fatal("the older build's kernel was reported terminated by the sync")
	}

	if _, err := m.Destroy(ctx, "k-legacy", lifecycle.UserRequested); err != nil {
		t.Fatal(err)
	}
	e.waitTermination(t, "k-legacy")
	counter.take()
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter.take(); !slices.Equal(got, []string{owner}) {
		t.Errorf("a sync without older builds' kernels listed by %v, want only %v", got, owner)
	}
}
