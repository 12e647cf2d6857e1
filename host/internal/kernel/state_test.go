package kernel_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/enginetest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// fakeContainer puts a running container with the given labels on the fake
// engine, as another run of the agent (or someone else) left it.
func fakeContainer(t *testing.T, fake *enginetest.Fake, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	id, err := fake.ContainerCreate(ctx, kernel.ContainerSpec{
		Config: &container.Config{Image: kerneltest.BusyboxImage, Labels: labels}, HostConfig: &container.HostConfig{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func kernelLabels(agentID, kernelID string) map[string]string {
	return map[string]string{
		kernel.LabelOwner: agentID, kernel.LabelAgentID: agentID,
		kernel.LabelKernelID: kernelID, kernel.LabelSessionID: "sess-" + kernelID,
	}
}

// Recover and Reconcile judge this agent's containers as upstream's
// sync_container_lifecycles (agent/agent.py) does: a container that
// stopped is a kernel that ended by itself, with its exit code and OOM
// kill; a live one the agent cannot take back (no recovery data) is
// removed as terminated-unknown-container; later strays of this agent are
// removed; other agents' containers are never touched. On the fake engine:
// the containers' states are set directly.
func TestRecoverAndReconcileJudgeContainers(t *testing.T) {
	e, fake := newFakeEnv(t)
	ctx := context.Background()
	dead := fakeContainer(t, fake, kernelLabels(e.agentID, "k-dead"))
	if err := fake.OOMKill(dead); err != nil {
		t.Fatal(err)
	}
	lost := fakeContainer(t, fake, kernelLabels(e.agentID, "k-lost"))
	foreign := fakeContainer(t, fake, kernelLabels("another-agent", "k-foreign"))

	m := e.manager(t)
	report, err := m.Recover(ctx)
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	if len(report.Recovered) != 0 {
		t.Errorf("recovered %v, want none", report.Recovered)
	}
	if len(report.Terminated) != 1 {
		t.Fatalf("terminated %+v, want k-dead only", report.Terminated)
	}
	if got := report.Terminated[0]; got.KernelID != "k-dead" || got.SessionID != "sess-k-dead" || got.ContainerID != dead ||
		got.Reason != lifecycle.SelfTerminated || got.ExitCode != enginetest.ExitCodeKilled || !got.OOMKilled {
		t.Errorf("k-dead's termination %+v, want self-terminated, exit %d, OOM-killed", got, enginetest.ExitCodeKilled)
	}
	if !slices.Equal(report.Removed, []string{lost}) {
		t.Errorf("removed %v, want k-lost's container %s", report.Removed, lost)
	}
	if term, ok := e.termination("k-lost"); !ok || term.Reason != lifecycle.TerminatedUnknownContainer || term.ExitCode != -1 {
		t.Errorf("k-lost's termination %+v (%v), want terminated-unknown-container with exit code -1", term, ok)
	}
	if term, ok := e.termination("k-dead"); !ok || term.ExitCode != enginetest.ExitCodeKilled {
		t.Errorf("k-dead's termination was not reported: %+v (%v)", term, ok)
	}
	for _, id := range []string{dead, lost} {
		if _, err := fake.ContainerInspect(ctx, id); !cerrdefs.IsNotFound(err) {
			t.Errorf("container %s left after recovery: %v", id, err)
		}
	}

	// A stray of this agent that appears later goes at the next sync; with
	// debug.skip-container-deletion it stays.
	keeper := e.manager(t, func(cfg *kernel.Config) { cfg.KeepContainers = true })
	if _, err := keeper.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	stray := fakeContainer(t, fake, kernelLabels(e.agentID, "k-stray"))
	if err := keeper.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.ContainerInspect(ctx, stray); err != nil {
		t.Errorf("the stray was removed despite KeepContainers: %v", err)
	}
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.ContainerInspect(ctx, stray); !cerrdefs.IsNotFound(err) {
		t.Errorf("the stray is still there after a sync: %v", err)
	}
	if insp, err := fake.ContainerInspect(ctx, foreign); err != nil || !insp.State.Running {
		t.Errorf("another agent's container was touched: %+v, %v", insp.State, err)
	}
}

// A sudo session's sudoers file is written as root by an exec in the
// started container, and any output or a non-zero exit fails the creation
// (upstream's "sudoers provision failed", agent/docker/agent.py), which
// then releases everything and reports failed-to-start. On the fake
// engine, which answers the exec.
func TestSudoProvisionFailures(t *testing.T) {
	for _, tc := range []struct {
		description string
		answer      kernel.ExecResult
	}{
		{"a non-zero exit", kernel.ExecResult{ExitCode: 2, Output: []byte("sh: can't create /etc/sudoers.d/01-bai-work: Read-only file system\n")}},
		{"output with exit 0", kernel.ExecResult{Output: []byte("warning: something\n")}},
	} {
		t.Run(tc.description, func(t *testing.T) {
			e, fake := newFakeEnv(t)
			fake.HandleExec(func(string, string, []string) kernel.ExecResult { return tc.answer })
			m := e.manager(t)
			start(t, m)
			before := e.allocator.Snapshot()
			req := request("k-sudo")
			req.SudoSession = true
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := m.Create(ctx, req)
			if err == nil || !strings.Contains(err.Error(), "sudoers provision failed") || !strings.Contains(err.Error(), strings.TrimSpace(string(tc.answer.Output))) {
				t.Fatalf("create: %v, want sudoers provision failed with the exec's output", err)
			}
			if errors.Is(err, kernel.ErrRunnerTimeout) {
				t.Errorf("the creation went on to wait for the runner: %v", err)
			}
			execs := fake.Execs()
			if len(execs) != 1 || execs[0].User != "root" || len(execs[0].Cmd) != 3 || execs[0].Cmd[0] != "sh" ||
				!strings.Contains(execs[0].Cmd[2], "/etc/sudoers.d/01-bai-work") || !strings.Contains(execs[0].Cmd[2], "NOPASSWD:ALL") {
				t.Errorf("execs %+v, want one sh -c writing /etc/sudoers.d/01-bai-work as root", execs)
			}
			term, ok := e.termination("k-sudo")
			if !ok || term.Reason != lifecycle.FailedToStart {
				t.Errorf("termination %+v (%v), want failed-to-start", term, ok)
			}
			if list, err := fake.ContainerList(ctx, kernel.LabelAgentID+"="+e.agentID); err != nil || len(list) != 0 {
				t.Errorf("containers left: %+v, %v", list, err)
			}
			if got := m.List(); len(got) != 0 {
				t.Errorf("registry: %+v", got)
			}
			e.wantIdle(t, e.allocator, e.ports, before)
		})
	}
}

// fakeRecoverable is fakeContainer with the scratch dir and recovery data
// Recover takes a kernel back from; its runner ports are firstPort and the
// next.
func fakeRecoverable(t *testing.T, e *env, fake *enginetest.Fake, labels map[string]string, firstPort int) string {
	t.Helper()
	id := fakeContainer(t, fake, labels)
	kernelID := labels[kernel.LabelKernelID]
	dirs, err := scratch.Create(e.scratchRoot, kernelID, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if err := scratch.WriteResourceFile(dirs, scratch.ResourceSpec{}); err != nil {
		t.Fatal(err)
	}
	if err := scratch.WriteRecovery(dirs, scratch.Recovery{
		Version: scratch.RecoveryVersion, AgentID: e.agentID, KernelID: kernelID, SessionID: labels[kernel.LabelSessionID],
		Image: e.image, CreatedAt: time.Now().UTC(), ReplInPort: firstPort, ReplOutPort: firstPort + 1,
		ServicePorts: []scratch.ServicePort{},
	}); err != nil {
		t.Fatal(err)
	}
	return id
}
