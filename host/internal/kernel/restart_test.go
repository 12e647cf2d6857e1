package kernel_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// TestRestartKernel: the kernel keeps its id, work/ and allocation; the
// container, ports and runner are new; no termination is reported; a
// restarted agent takes the new container back.
func TestRestartKernel(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// This agent's event loop stops before the second agent starts.
	if _, err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = m.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	before := e.allocator.Snapshot()

	created := create(t, m, request(e.kid("k-restart")))
	held := e.allocator.Snapshot()
	wantOutput(t, run(t, m, e.kid("k-restart"), "w", runnerclient.ModeQuery, "echo kept > /home/work/kept.txt; inmemory=yes; echo ok"), 0, "ok\n")

	type restartResult struct {
		created kernel.Created
		err     error
	}
	done := make(chan restartResult, 1)
	go func() {
		c, err := m.Restart(ctx, kernel.RestartRequest{
			KernelID: e.kid("k-restart"), SessionID: "sess-" + e.kid("k-restart"),
			Update: func(req *kernel.CreateRequest) { req.Env = map[string]string{"GREETING": "after-restart"} },
		})
		done <- restartResult{c, err}
	}()
	// A call that arrives during the restart waits for the new container,
	// as upstream's execute does, instead of failing.
	for {
		info, err := m.Get(e.kid("k-restart"))
		if err != nil {
			t.Fatal(err)
		}
		if info.State == "restarting" {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("restart ended (%v) before it was seen in progress", r.err)
		case <-time.After(time.Millisecond):
		}
	}
	wantOutput(t, run(t, m, e.kid("k-restart"), "during", runnerclient.ModeQuery, "echo $GREETING"), 0, "after-restart\n")
	r := <-done
	restarted, err := r.created, r.err
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if restarted.ContainerID == created.ContainerID || restarted.ContainerID == "" {
		t.Fatalf("container %q after restart, was %q", restarted.ContainerID, created.ContainerID)
	}
	if _, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the old container is still there: %v", err)
	}
	if restarted.State != "running" || restarted.ScratchDir != created.ScratchDir || !reflect.DeepEqual(restarted.Allocation, created.Allocation) {
		t.Errorf("restarted kernel %+v, want running with the same scratch dir and allocation as %+v", restarted.Info, created.Info)
	}
	if got := e.allocator.Snapshot(); !sameUsage(got, held) {
		t.Errorf("allocation changed by the restart:\n got %+v\nwant %+v", got, held)
	}
	if n := e.ports.InUse(); n != 4 {
		t.Errorf("%d ports in use after restart, want 4 (old ones released, new ones held)", n)
	}
	// work/ survives, the shell's memory does not, the updated environment
	// is the new container's.
	wantOutput(t, run(t, m, e.kid("k-restart"), "r", runnerclient.ModeQuery, "cat /home/work/kept.txt; echo ${inmemory:-unset}; echo $GREETING"), 0,
		"kept\nunset\nafter-restart\n")

	rec, err := scratch.ReadRecovery(scratch.Dirs{Config: filepath.Join(created.ScratchDir, "config")})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ReplInPort != restarted.ReplInPort || rec.ReplOutPort != restarted.ReplOutPort {
		t.Errorf("recovery.json has repl ports %d/%d, the kernel %d/%d", rec.ReplInPort, rec.ReplOutPort, restarted.ReplInPort, restarted.ReplOutPort)
	}
	resource, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", scratch.ResourceFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(resource), "CID=") != 1 || !strings.Contains(string(resource), "CID="+restarted.ContainerID) {
		t.Errorf("resource.txt does not name just the new container:\n%s", resource)
	}

	// The old container's death is not the kernel's: reconciliation rounds,
	// run here directly, see only the new container.
	for range 2 {
		if err := m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if term, ok := e.termination(e.kid("k-restart")); ok {
		t.Errorf("a termination was reported for the restart: %+v", term)
	}
	if info, err := m.Get(e.kid("k-restart")); err != nil || info.ContainerID != restarted.ContainerID {
		t.Fatalf("after reconciliation: %+v, %v", info, err)
	}

	// An agent restart takes the new container back.
	stopRun()
	<-runDone
	m.Close()
	e.allocator = kerneltest.NewAllocator(t, e.plugins)
	e.ports = kerneltest.PortsAt(t, e.portMin)
	second := e.manager(t)
	report := start(t, second)
	if !reflect.DeepEqual(report.Recovered, []string{e.kid("k-restart")}) {
		t.Fatalf("recovered %v, want [k-restart]", report.Recovered)
	}
	if info, err := second.Get(e.kid("k-restart")); err != nil || info.ContainerID != restarted.ContainerID {
		t.Fatalf("recovered kernel %+v, %v", info, err)
	}
	if got := e.allocator.Snapshot(); !sameUsage(got, held) {
		t.Errorf("recovered allocation differs:\n got %+v\nwant %+v", got, held)
	}
	wantOutput(t, run(t, second, e.kid("k-restart"), "r2", runnerclient.ModeQuery, "cat /home/work/kept.txt"), 0, "kept\n")
	if _, err := second.Destroy(ctx, e.kid("k-restart"), ""); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestRestartKernelFailures: what can be checked first leaves the kernel
// running as it was; a new container that cannot start ends the kernel
// with everything given back and failed-to-start reported.
func TestRestartKernelFailures(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	created := create(t, m, request(e.kid("k-rfail")))

	for _, tc := range []struct {
		description string
		req         kernel.RestartRequest
		want        error
	}{
		{"an unknown kernel", kernel.RestartRequest{KernelID: e.kid("k-nobody")}, kernel.ErrKernelNotFound},
		{"another session's kernel", kernel.RestartRequest{KernelID: e.kid("k-rfail"), SessionID: "sess-other"}, kernel.ErrInvalidRequest},
		{"an image that is not here", kernel.RestartRequest{KernelID: e.kid("k-rfail"), Image: "baiagent-test/no-such-image:latest"}, kernel.ErrImageNotFound},
		{"a session network that is not there", kernel.RestartRequest{KernelID: e.kid("k-rfail"),
			Update: func(req *kernel.CreateRequest) { req.Network = "baiagent-no-such-network" }}, kernel.ErrInvalidRequest},
	} {
		if _, err := m.Restart(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("restart with %s: %v, want %v", tc.description, err, tc.want)
		}
		info, err := m.Get(e.kid("k-rfail"))
		if err != nil || info.ContainerID != created.ContainerID || info.State != "running" {
			t.Fatalf("after a restart with %s the kernel is %+v, %v; want it untouched", tc.description, info, err)
		}
	}
	wantOutput(t, run(t, m, e.kid("k-rfail"), "alive", runnerclient.ModeQuery, "echo alive"), 0, "alive\n")

	// Docker refuses the new container (a bind mount without a source)
	// after the old one is gone.
	_, err := m.Restart(ctx, kernel.RestartRequest{KernelID: e.kid("k-rfail"), Update: func(req *kernel.CreateRequest) {
		req.Mounts = []scratch.Mount{{Source: "/nonexistent/baiagent-test", Target: "/mnt/data"}}
	}})
	if err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Fatalf("restart into a broken container: %v, want an error saying the kernel is terminated", err)
	}
	if term, ok := e.termination(e.kid("k-rfail")); !ok || term.Reason != lifecycle.FailedToStart {
		t.Errorf("termination %+v (%v), want reason %s", term, ok, lifecycle.FailedToStart)
	}
	if _, err := m.Get(e.kid("k-rfail")); !errors.Is(err, kernel.ErrKernelNotFound) {
		t.Errorf("the kernel is still registered: %v", err)
	}
	if _, err := os.Stat(created.ScratchDir); !os.IsNotExist(err) {
		t.Errorf("scratch dir still exists: %v", err)
	}
	list, err := e.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", kernel.LabelAgentID+"="+e.agentID)})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("containers left: %d, %v", len(list.Items), err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
