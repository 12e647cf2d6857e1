package kernel_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// pause holds one engine call after it did its work: reached closes when
// the call gets there, and it returns once release is closed.
type pause struct{ reached, release chan struct{} }

// pausing is an engine whose next ContainerStop or ContainerList, once
// armed, pauses after it stopped or listed.
type pausing struct {
	kernel.Engine
	mu         sync.Mutex
	stop, list *pause
}

func (p *pausing) arm(slot **pause) *pause {
	p.mu.Lock()
	defer p.mu.Unlock()
	*slot = &pause{reached: make(chan struct{}), release: make(chan struct{})}
	return *slot
}

func (p *pausing) hold(slot **pause) {
	p.mu.Lock()
	q := *slot
	*slot = nil
	p.mu.Unlock()
	if q != nil {
		close(q.reached)
		<-q.release
	}
}

func (p *pausing) ContainerStop(ctx context.Context, containerID string, timeout time.Duration) error {
	err := p.Engine.ContainerStop(ctx, containerID, timeout)
	p.hold(&p.stop)
	return err
}

func (p *pausing) ContainerList(ctx context.Context, label string) ([]container.Summary, error) {
	list, err := p.Engine.ContainerList(ctx, label)
	p.hold(&p.list)
	return list, err
}

// A sync that runs during a destroy leaves the kernel to it: it neither
// cleans the kernel itself (its container is stopped but the destroy has
// not removed it yet) nor takes the container, listed before the destroy
// removed it, for one the registry does not know (which logged a warning,
// and a second one when the remove found it gone). A kernel whose
// container ended by itself is still cleaned by the sync, once. On the
// fake engine, with the destroy held between its stop and its cleanup.
func TestReconcileLeavesADestroyToIt(t *testing.T) {
	e, fake := newFakeEnv(t)
	eng := &pausing{Engine: fake}
	e.engine = eng
	ctx := context.Background()
	ids := map[string]string{}
	for i, k := range []string{"k-judged", "k-listed", "k-died"} {
		ids[k] = fakeRecoverable(t, e, fake, kernelLabels(e.agentID, k), e.portMin+90+2*i)
	}
	var logs testutil.SyncBuffer
	m := e.manager(t, func(cfg *kernel.Config) {
		cfg.NoPeriodicReconcile = true
		cfg.Logger = zerolog.New(&logs).Level(zerolog.WarnLevel)
	})
	// No runner answers: Recover waits for each until rctx ends.
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	report, err := m.Recover(rctx)
	cancel()
	if err != nil || len(report.Recovered) != 3 {
		t.Fatalf("recover: %+v, %v", report, err)
	}
	seen := len(logs.String())
	terminations := func(kernelID string) int {
		e.mu.Lock()
		defer e.mu.Unlock()
		n := 0
		for _, term := range e.terminations {
			if term.KernelID == kernelID {
				n++
			}
		}
		return n
	}
	destroy := func(kernelID string) (*pause, chan error) {
		stop := eng.arm(&eng.stop)
		done := make(chan error, 1)
		go func() {
			_, err := m.Destroy(ctx, kernelID, lifecycle.UserRequested)
			done <- err
		}()
		<-stop.reached
		return stop, done
	}

	// The sync judges the registry while the destroy is between its stop
	// and its cleanup.
	stop, destroyed := destroy("k-judged")
	if err := m.Reconcile(ctx); err != nil {
		t.Errorf("sync during a destroy: %v", err)
	}
	if n := terminations("k-judged"); n != 0 {
		t.Errorf("the sync cleaned a kernel its destroy was stopping (%d terminations)", n)
	}
	close(stop.release)
	if err := <-destroyed; err != nil {
		t.Fatalf("destroy k-judged: %v", err)
	}

	// The sync lists the stopped container, and the destroy ends before
	// the sync judges.
	stop, destroyed = destroy("k-listed")
	list := eng.arm(&eng.list)
	synced := make(chan error, 1)
	go func() { synced <- m.Reconcile(ctx) }()
	<-list.reached
	close(stop.release)
	if err := <-destroyed; err != nil {
		t.Fatalf("destroy k-listed: %v", err)
	}
	close(list.release)
	if err := <-synced; err != nil {
		t.Errorf("sync that listed a container being destroyed: %v", err)
	}

	// No event loop runs here: only the sync sees k-died's end.
	if err := fake.Exit(ids["k-died"], 3); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Reconcile(ctx); err != nil {
			t.Errorf("sync after k-died ended: %v", err)
		}
	}

	for k, want := range map[string]lifecycle.Reason{"k-judged": lifecycle.UserRequested, "k-listed": lifecycle.UserRequested, "k-died": lifecycle.SelfTerminated} {
		term, _ := e.termination(k)
		if n := terminations(k); n != 1 || term.Reason != want {
			t.Errorf("%s: %d terminations, first %+v; want one, %s", k, n, term, want)
		}
		if _, err := fake.ContainerInspect(ctx, ids[k]); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s's container is left: %v", k, err)
		}
	}
	if term, _ := e.termination("k-died"); term.ExitCode != 3 {
		t.Errorf("k-died's exit code %d, want 3", term.ExitCode)
	}
	if got := m.List(); len(got) != 0 {
		t.Errorf("registry: %+v", got)
	}
	if warned := logs.String()[seen:]; strings.Contains(warned, `"level"`) {
		t.Errorf("the syncs logged:\n%s", warned)
	}
}
