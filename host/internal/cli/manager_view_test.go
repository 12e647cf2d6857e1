package cli

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// managerView is a real agent reporting to a real Redis, read back the way
// the 26.8 manager reads it.
type managerView struct {
	*realAgent
	redis  *redistest.Server
	reader *managertest.Reader
}

func startWithRedis(t *testing.T) *managerView {
	t.Helper()
	srv := redistest.Start(t, false)
	reader := managertest.NewReader(t, srv.Addr)
	a := buildAgentWith(t, fmt.Sprintf("\n[redis]\naddr = %q\n", srv.Addr))
	a.start(t)
	t.Cleanup(func() { a.stop(t) })
	return &managerView{realAgent: a, redis: srv, reader: reader}
}

var keptKernel = regexp.MustCompile(`kernel (\S+) \(session (\S+)\) left running`)

// runKernel creates a busybox kernel over the RPC with `baiagent kernel run
// --keep` and returns its kernel and session ids.
func (v *managerView) runKernel(t *testing.T, mem string) (kernelID, sessionID string) {
	t.Helper()
	_, stderr, err := run(t, testEnv(t, nil), "kernel", "run", "--keep", "--addr", "tcp://"+v.rpcAddr,
		"--image", kerneltest.BusyboxImage, "--cpu", "1", "--mem", mem, "true")
	m := keptKernel.FindStringSubmatch(stderr)
	if err != nil || m == nil {
		t.Fatalf("kernel run: %v\n%s\nagent log:\n%s", err, stderr, v.logs.String())
	}
	return m[1], m[2]
}

func (v *managerView) invoke(t *testing.T, method string, args ...any) any {
	t.Helper()
	var out any
	v.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		var err error
		out, err = c.Invoke(ctx, method, args, nil)
		return err
	})
	return out
}

// terminated waits for kernel_terminated of kernelID in the stream and on
// events_all, and checks both say the same.
func (v *managerView) terminated(t *testing.T, kernelID string) managertest.Event {
	t.Helper()
	match := func(ev managertest.Event) bool { return ev.Name == "kernel_terminated" && ev.Str(0) == kernelID }
	ev := v.reader.WaitStream(time.Minute, match)
	b := v.reader.WaitBroadcast(10*time.Second, match)
	if b.Reason(2) != ev.Reason(2) || b.ReasonIsEnum(2) != ev.ReasonIsEnum(2) || b.Int(3) != ev.Int(3) {
		t.Errorf("kernel_terminated of %s: broadcast %+v differs from the stream's %+v", kernelID, b.Args, ev.Args)
	}
	return ev
}

// TestKernelLifeAsTheManagerReadsIt runs a real agent against a real Redis
// and real Docker and reads everything back through managertest, which
// fails on anything the 26.8 manager could not decode. It pins the
// reasons kernel_terminated carries (agent/agent.py, agent/server.py
// destroy_kernel, agent/docker/agent.py for OOM kills and self-exits).
func TestKernelLifeAsTheManagerReadsIt(t *testing.T) {
	docker := kerneltest.Docker(t)
	kerneltest.BuildBusybox(t, docker)
	v := startWithRedis(t)

	ctx := context.Background()
	v.reader.WaitStream(time.Minute, managertest.Named("agent_started"))
	v.reader.WaitStream(time.Minute, managertest.Named("agent_heartbeat"))

	// A kernel the manager destroys with its own reason string: echoed back
	// as that str, not the enum.
	routed, routedSession := v.runKernel(t, "64m")
	// execute: execution_started before the runner is asked, then
	// execution_finished (agent/agent.py execute), which keep the session
	// from looking idle.
	isExec := func(name string) func(managertest.Event) bool {
		return func(ev managertest.Event) bool { return ev.Name == name && ev.Str(0) == routedSession }
	}
	v.execute(t, routedSession, routed, "echo hi")
	v.reader.WaitStream(10*time.Second, isExec("execution_started"))
	v.reader.WaitStream(10*time.Second, isExec("execution_finished"))

	// commit to an image: a background task whose last event is cached
	// for the manager's commit handler (bgtask/tasks/commit_session.py reads
	// it through the cache propagator).
	image := fmt.Sprintf("baiagent-test/e2e-commit:%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = docker.ImageRemove(context.Background(), image, client.ImageRemoveOptions{Force: true}) })
	var task string
	v.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		res, err := c.Invoke(ctx, "commit", []any{routed, "e2e"}, map[string]any{"canonical": image})
		if err != nil {
			return err
		}
		task, _ = res.(wiremsg.Map)["bgtask_id"].(string)
		return nil
	})
	done := v.reader.WaitBroadcast(time.Minute, func(ev managertest.Event) bool {
		return (ev.Name == "bgtask_done" || ev.Name == "bgtask_failed") && ev.Str(0) == task
	})
	if done.Name != "bgtask_done" {
		t.Fatalf("commit task ended with %s %v", done.Name, done.Args)
	}
	cached, ttl, err := v.reader.BgtaskCache(ctx, task)
	if err != nil || cached.Name != "bgtask_done" || ttl <= 0 || ttl > 300*time.Second {
		t.Errorf("bgtask.%s: %+v, TTL %v, %v; want bgtask_done kept at most 300 s", task, cached, ttl, err)
	}
	if got := v.invoke(t, "destroy_kernel", routed, routedSession, "ROUTE_TERMINATION"); got != nil {
		t.Errorf("destroy_kernel returned %#v, want None", got)
	}
	ev := v.terminated(t, routed)
	if ev.Reason(2) != "ROUTE_TERMINATION" || ev.ReasonIsEnum(2) || ev.Str(1) != routedSession {
		t.Errorf("kernel_terminated after a manager's destroy: %+v, want the plain str ROUTE_TERMINATION", ev.Args)
	}

	// A kernel killed by its cgroup's OOM killer: self-terminated, as upstream.
	oom, oomSession := v.runKernel(t, "48m")
	v.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		// The runner volunteers as the OOM killer's victim (see
		// kernel.TestKernelDeathsNoticedThroughDockerEvents).
		_, _ = c.Invoke(ctx, "execute", []any{oomSession, oom, int64(4), "r" + strconv.Itoa(1), "query",
			"echo 1000 > /proc/$PPID/oom_score_adj && tail /dev/zero", map[string]any{}, 0.3}, nil)
		return nil
	})
	ev = v.terminated(t, oom)
	if ev.Reason(2) != "self-terminated" || !ev.ReasonIsEnum(2) || ev.Int(3) != 137 {
		t.Errorf("kernel_terminated after an OOM kill: %+v, want the enum self-terminated with exit code 137", ev.Args)
	}

	// destroy_kernel of a kernel this agent never had: None, and
	// already-terminated with exit code -1 (agent/agent.py).
	ghost, ghostSession := "6a1d4d0e-0a7e-4f43-9d0c-3c0d2f6f6b01", "6a1d4d0e-0a7e-4f43-9d0c-3c0d2f6f6b02"
	if got := v.invoke(t, "destroy_kernel", ghost, ghostSession, nil); got != nil {
		t.Errorf("destroy_kernel of an unknown kernel returned %#v, want None", got)
	}
	ev = v.terminated(t, ghost)
	if ev.Reason(2) != "already-terminated" || !ev.ReasonIsEnum(2) || ev.Int(3) != -1 || ev.Str(1) != ghostSession {
		t.Errorf("kernel_terminated of an unknown kernel: %+v, want already-terminated, -1", ev.Args)
	}
	// With suppress_events nothing is sent.
	quiet := "6a1d4d0e-0a7e-4f43-9d0c-3c0d2f6f6b03"
	v.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		_, err := c.Invoke(ctx, "destroy_kernel", []any{quiet, ghostSession, nil}, map[string]any{"suppress_events": true})
		return err
	})

	// The finished kernels' logs, as the manager's do_sync_kernel_logs
	// handler reads them: DB 6 containerlog.{cid}, kept an hour
	// (agent/docker/agent.py collect_logs; manager handlers/kernel.py).
	for _, kid := range []string{routed, oom} {
		sync := v.reader.WaitStream(time.Minute, func(ev managertest.Event) bool {
			return ev.Name == "do_sync_kernel_logs" && ev.Str(0) == kid
		})
		key := "containerlog." + sync.Str(1)
		logs := v.redis.Client(t, 6)
		n, err := logs.LLen(ctx, key).Result()
		if err != nil || n == 0 {
			t.Errorf("%s: %d chunks, %v; want the container's log", key, n, err)
		}
		if ttl := logs.TTL(ctx, key).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s: TTL %v, want at most an hour", key, ttl)
		}
	}
	// The keys the manager's scheduler and UI read beside the events.
	for _, k := range []struct {
		db       int
		key      string
		maxTTL   time.Duration
		noExpiry bool
	}{
		{0, "container_count." + v.agentID, 24 * time.Hour, false},
		{3, "installed_image:" + v.agentID, 0, true},
	} {
		c := v.redis.Client(t, k.db)
		ttl, err := c.TTL(ctx, k.key).Result()
		switch {
		case err != nil || ttl == -2*time.Nanosecond:
			t.Errorf("DB %d %s: missing (%v)", k.db, k.key, err)
		case k.noExpiry && ttl != -1*time.Nanosecond:
			t.Errorf("DB %d %s: TTL %v, want none", k.db, k.key, ttl)
		case !k.noExpiry && (ttl <= 0 || ttl > k.maxTTL):
			t.Errorf("DB %d %s: TTL %v, want at most %v", k.db, k.key, ttl, k.maxTTL)
		}
	}

	// Every kernel's events, in order, as the manager's stream holds them.
	byKernel := map[string][]string{}
	for _, ev := range v.reader.Stream() {
		if len(ev.Args) > 0 && ev.Source != v.agentID {
			t.Errorf("%s from %q, want the agent id %s", ev.Name, ev.Source, v.agentID)
		}
		switch ev.Name {
		case "kernel_preparing", "kernel_pulling", "kernel_creating", "kernel_started", "kernel_terminated":
			byKernel[ev.Str(0)] = append(byKernel[ev.Str(0)], ev.Name)
		}
	}
	lifecycle := fmt.Sprint([]string{"kernel_preparing", "kernel_creating", "kernel_started", "kernel_terminated"})
	for _, kid := range []string{routed, oom} {
		if got := fmt.Sprint(byKernel[kid]); got != lifecycle {
			t.Errorf("kernel %s: events %s, want %s", kid, got, lifecycle)
		}
	}
	if got := fmt.Sprint(byKernel[ghost]); got != "[kernel_terminated]" {
		t.Errorf("unknown kernel: events %s, want one kernel_terminated", got)
	}
	if got := byKernel[quiet]; len(got) != 0 {
		t.Errorf("destroy with suppress_events sent %v", got)
	}
}
