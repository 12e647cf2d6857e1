package kernel_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// waitTermination waits for the kernel's termination report.
func (e *env) waitTermination(t *testing.T, kernelID string) kernel.Termination {
	t.Helper()
	var term kernel.Termination
	testutil.Eventually(t, time.Minute, "the end of kernel "+kernelID+" to be noticed", func() bool {
		var ok bool
		term, ok = e.termination(kernelID)
		return ok
	})
	return term
}

// TestKernelDeathsNoticedThroughDockerEvents lets two kernels die by
// themselves while the manager only follows Docker's events (no
// reconciliation round comes in the test's time): one whose main process
// dies of a signal, one killed by the cgroup OOM killer. Both are cleaned
// (container, scratch dir, ports, allocation) and reported with upstream's
// reasons: self-terminated with the container's exit code, both of them.
func TestKernelDeathsNoticedThroughDockerEvents(t *testing.T) {
	e := newEnv(t)
	// Reconciliation is pushed out of the test's reach: whatever the
	// manager notices, it noticed through Docker's events.
	m := e.manager(t, func(cfg *kernel.Config) { cfg.ReconcileInterval = time.Hour })
	start(t, m)
	before := e.allocator.Snapshot()

	// uid 0: the code runs as root, as the runner, so it may signal it.
	exitReq := request(e.kid("k-exit"))
	root := 0
	exitReq.UID = &root
	exiting := create(t, m, exitReq)
	oomReq := request(e.kid("k-oom"))
	oomReq.ResourceSlots["mem"] = decimal.NewFromInt(48 << 20)
	oomReq.UID = &root // writing the root runner's oom_score_adj needs root
	oom := create(t, m, oomReq)
	insp, err := e.docker.ContainerInspect(context.Background(), oom.ContainerID, client.ContainerInspectOptions{})
	if err != nil || insp.Container.HostConfig.Memory != 48<<20 || insp.Container.HostConfig.MemorySwap != 48<<20 {
		t.Fatalf("the OOM kernel's memory limit: %+v, %v", insp.Container.HostConfig, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := runnerclient.ExecOptions{FlushTimeout: 300 * time.Millisecond}
	// The shell's parent is the runner, the container's main process (under
	// Docker's init). SIGHUP kills it (a Go program dies of it when it does not
	// catch it): the container exits with 128+1.
	_, _ = m.Execute(ctx, e.kid("k-exit"), "bye", runnerclient.ModeQuery, "kill -HUP $PPID", opts)
	// tail buffers /dev/zero's endless line until the cgroup's 48 MiB run
	// out. The OOM killer kills the process with the highest badness; in a
	// real kernel that is the language runtime holding the data, the main
	// process. Here the main process is the small runner, so it volunteers
	// (raising one's own oom_score_adj needs no privilege).
	_, _ = m.Execute(ctx, e.kid("k-oom"), "hog", runnerclient.ModeQuery, "echo 1000 > /proc/$PPID/oom_score_adj && tail /dev/zero", opts)

	term := e.waitTermination(t, e.kid("k-exit"))
	if term.Reason != lifecycle.SelfTerminated || term.ExitCode != 128+1 || term.ContainerID != exiting.ContainerID || term.SessionID != "sess-"+e.kid("k-exit") {
		t.Errorf("k-exit: termination %+v, want self-terminated with exit code 129", term)
	}
	term = e.waitTermination(t, e.kid("k-oom"))
	// Upstream reports an OOM kill as self-terminated too
	// (agent/docker/agent.py); 26.8's KernelLifecycleEventReason has no
	// oom-killed member.
	if term.Reason != lifecycle.SelfTerminated || !term.OOMKilled || term.ExitCode != 128+9 || term.ContainerID != oom.ContainerID {
		t.Errorf("k-oom: termination %+v, want self-terminated, OOM-killed, with exit code 137", term)
	}
	for _, c := range []kernel.Created{exiting, oom} {
		if _, err := m.Get(c.KernelID); !errors.Is(err, kernel.ErrKernelNotFound) {
			t.Errorf("registry still has %s: %v", c.KernelID, err)
		}
		if _, err := os.Stat(c.ScratchDir); !os.IsNotExist(err) {
			t.Errorf("%s: scratch dir still exists: %v", c.KernelID, err)
		}
		if _, err := e.docker.ContainerInspect(ctx, c.ContainerID, client.ContainerInspectOptions{}); err == nil {
			t.Errorf("%s: container still exists", c.KernelID)
		}
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
