package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/images/registrytest"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/session"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// opsAgent is a real kernel manager over Docker behind an RPC server with
// the kernel and kernel-operation methods.
type opsAgent struct {
	docker    *client.Client
	image     string
	manager   *kernel.Manager
	allocator *alloc.Allocator
	ports     *portpool.Pool
	rpc       *callosum.Client
	ops       *KernelOps
	km        *testKernels
	images    *ImageMethods // with opsAgentOptions.images
	events    *recorder
	// redis and bus are set by newOpsAgentWith(redis: true): every event
	// also goes through a real bus to a real Redis.
	redis *redistest.Server
	bus   *events.Bus
	// commitPath is the agent's image-commit-path.
	commitPath string

	mu    sync.Mutex
	terms []kernel.Termination
}

// opsAgentOptions vary newOpsAgentWith's agent.
type opsAgentOptions struct {
	// redis sends the events through an events.Bus to a real Redis too,
	// with kernel_terminated from the manager's OnTerminated as the daemon
	// does.
	redis bool
	// execTimeout is the kernel manager's ExecTimeout.
	execTimeout time.Duration
	// images serves the image methods (check_and_pull, push_image, ...)
	// too, over an image service on the same Docker, their events to the
	// same emitters.
	images bool
}

// tee sends each event to every emitter.
type tee []Emitter

func (t tee) Emit(ctx context.Context, ev events.Event) error {
	var errs []error
	for _, e := range t {
		errs = append(errs, e.Emit(ctx, ev))
	}
	return errors.Join(errs...)
}

func newOpsAgent(t *testing.T) *opsAgent {
	t.Helper()
	return newOpsAgentWith(t, opsAgentOptions{})
}

func newOpsAgentWith(t *testing.T, o opsAgentOptions) *opsAgent {
	t.Helper()
	a := &opsAgent{docker: kerneltest.Docker(t), events: &recorder{t: t}, commitPath: t.TempDir()}
	var emitter Emitter = a.events
	if o.redis {
		a.redis = redistest.Start(t, false)
		bus, err := events.New(context.Background(), events.Options{
			AgentID: "i-test", Redis: &events.RedisOptions{Addr: a.redis.Addr}, QueueDir: t.TempDir(), Logger: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		a.bus, emitter = bus, tee{a.events, bus}
	}
	a.image = kerneltest.BuildBusybox(t, a.docker)
	plugins, allocator := kerneltest.CPUPlugin(t)
	a.allocator, a.ports = allocator, kerneltest.Ports(t)
	agentID := fmt.Sprintf("rpc-ops-agent-%d", rand.Uint64())
	scratchRoot := t.TempDir()
	m, err := kernel.New(kernel.Config{
		AgentID: agentID, ScratchRoot: scratchRoot, KernelUID: 1000, KernelGID: 1000, RunnerPath: kerneltest.RunnerBinary(t),
		StopTimeout: 2 * time.Second, ReconcileInterval: time.Second, CommitPath: a.commitPath, ExecTimeout: o.execTimeout,
		OnTerminated: func(term kernel.Termination) {
			a.mu.Lock()
			a.terms = append(a.terms, term)
			a.mu.Unlock()
			if a.bus != nil {
				ev := events.KernelTerminated{KernelID: term.KernelID, SessionID: term.SessionID, Reason: term.Reason, ExitCode: term.ExitCode}
				if err := a.bus.Emit(context.Background(), ev); err != nil {
					t.Errorf("kernel_terminated: %v", err)
				}
			}
		},
		Engine: kernel.NewDockerEngine(a.docker), Allocator: allocator, Plugins: plugins, Ports: a.ports, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.manager = m
	t.Cleanup(func() {
		kerneltest.RemoveLabelled(t, a.docker, kernel.LabelAgentID, agentID)
		if left := kerneltest.ScratchEntries(t, scratchRoot); len(left) > 0 {
			t.Errorf("scratch dirs left behind: %v", left)
		}
	})
	runManager(t, m)

	// The execution events go to Redis only: the recorder keeps the
	// commits' bgtask events alone.
	var execEvents Emitter
	if a.bus != nil {
		execEvents = a.bus
	}
	km := newTestKernels(m, session.Options{Events: execEvents})
	a.km = km
	t.Cleanup(km.Wait)
	srv, err := New(Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-test", Logger: zerolog.Nop()}, Deps{Kernels: km, Ports: a.ports})
	if err != nil {
		t.Fatal(err)
	}
	RegisterKernelMethods(srv, km.KernelMethods)
	a.ops = NewKernelOps(session.NewOps(m), KernelOpsOptions{Events: emitter, Logger: zerolog.Nop()})
	t.Cleanup(a.ops.Close)
	RegisterKernelOpsMethods(srv, a.ops)
	if o.images {
		svc := images.New(a.docker, images.Options{PullTimeout: time.Minute, PushTimeout: time.Minute, KernelLabel: kernel.LabelKernelID, Logger: zerolog.Nop()})
		t.Cleanup(svc.Close)
		a.images = NewImageMethods(session.NewImages(svc), ImageMethodsOptions{AgentID: "i-test", Events: emitter, Logger: zerolog.Nop()})
		t.Cleanup(a.images.Close)
		RegisterImageMethods(srv, a.images)
	}
	serveUntilCleanup(t, srv)
	a.rpc = dial(t, srv.Endpoint(), callosum.ClientOptions{})
	return a
}

func (a *opsAgent) call(ctx context.Context, method string, args ...any) (any, error) {
	return invokeRaw(ctx, a.rpc, method, args, nil)
}

// TestKernelOpsArgumentErrors: a wrong argument fails naming it, before
// anything is done.
func TestKernelOpsArgumentErrors(t *testing.T) {
	a := newOpsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		description string
		method      string
		args        []any
		name, text  string
	}{
		{"create_local_network without a name", "create_local_network", nil, "TypeError", "'network_name'"},
		{"create_local_network with an int", "create_local_network", []any{5}, "TypeError", "'network_name' must be str"},
		{"create_local_network with a path", "create_local_network", []any{"../x"}, "InvalidArgumentError", "../x"},
		{"destroy_local_network of Docker's bridge", "destroy_local_network", []any{"bridge"}, "InvalidArgumentError", "bridge"},
		{"destroy_local_network with two arguments", "destroy_local_network", []any{"a", "b"}, "TypeError", "takes 1 positional"},
		{"reset_agent with an argument", "reset_agent", []any{"x"}, "TypeError", "takes 0 positional"},
		{"restart_kernel with a bad session id", "restart_kernel", []any{"nope", randomUUID(), nil, obj()}, "ValueError", "'session_id'"},
		{"restart_kernel with an int image", "restart_kernel", []any{randomUUID(), randomUUID(), 7, obj()}, "TypeError", "'kernel_image' must be ImageRef"},
		{"restart_kernel with a list as updated_config", "restart_kernel", []any{randomUUID(), randomUUID(), nil, []any{}}, "TypeError", "updated_config"},
		{"restart_kernel with an int environ", "restart_kernel", []any{randomUUID(), randomUUID(), nil, obj("environ", 3)}, "TypeError", `updated_config[\"environ\"]`}, // repr escapes the quotes
		{"restart_kernel of an unknown kernel", "restart_kernel", []any{randomUUID(), randomUUID(), nil, obj()}, "KernelNotFoundError", "kernel not found"},
	} {
		got, err := a.call(ctx, tc.method, tc.args...)
		wantFailure(t, tc.description, got, err, tc.name, tc.text)
	}
}

// TestSessionNetworkAndResetOverRPC: create_local_network, create_kernels
// with a bridge network_config joins the kernels to it under their
// cluster hostnames, reset_agent destroys them all, destroy_local_network
// removes the network.
func TestSessionNetworkAndResetOverRPC(t *testing.T) {
	a := newOpsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := a.allocator.Snapshot()
	network := fmt.Sprintf("bai-singlenode-rpc-%d", rand.Uint64())
	t.Cleanup(func() {
		_, err := a.docker.NetworkRemove(context.Background(), network, client.NetworkRemoveOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", network, err)
		}
	})
	if got, err := a.call(ctx, "create_local_network", network); err != nil || got != nil {
		t.Fatalf("create_local_network: %#v, %v", got, err)
	}

	sid := randomUUID()
	hosts := map[string]string{randomUUID(): "main1", randomUUID(): "sub1"}
	configs := map[string]kv{}
	refs := map[string]mpExt{}
	for kid, host := range hosts {
		configs[kid] = managerConfig(t, kid, sid, a.image).with("mounts", []any{}).
			with("resource_slots", obj("cpu", "0", "mem", "67108864")).with("cluster_hostname", host).
			with("auto_pull", pickleEnum("AutoPullBehavior", "none"))
		refs[kid] = pickleImageRef("busybox", "baiagent-test", "latest", "cr.example.com", kernel.NodeArchitecture(), true)
	}
	args := createArgs(t, sid, configs, refs)
	args[3] = obj("mode", goldenExt(t, wiremsg.ExtEnum, goldenClusterModeSingle), "size", len(hosts), "replicas", obj("main", 1, "sub", 1),
		"network_config", obj("mode", "bridge", "network_name", network), "ssh_keypair", nil, "cluster_ssh_port_mapping", nil)
	if _, err := a.call(ctx, "create_kernels", args...); err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	for kid, host := range hosts {
		info, err := a.manager.Get(kid)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.docker.ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ep := c.Container.NetworkSettings.Networks[network]; ep == nil || !slices.Contains(ep.Aliases, host) {
			t.Errorf("kernel %s: networks %v, want %s with alias %s", kid, c.Container.NetworkSettings.Networks, network, host)
		}
	}

	if got, err := a.call(ctx, "reset_agent"); err != nil || got != nil {
		t.Fatalf("reset_agent: %#v, %v", got, err)
	}
	if left := a.manager.List(); len(left) != 0 {
		t.Errorf("kernels left after reset_agent: %+v", left)
	}
	a.mu.Lock()
	if len(a.terms) != len(hosts) {
		t.Errorf("terminations %+v, want one per kernel", a.terms)
	}
	a.mu.Unlock()
	if got, err := a.call(ctx, "destroy_local_network", network); err != nil || got != nil {
		t.Fatalf("destroy_local_network: %#v, %v", got, err)
	}
	if _, err := a.docker.NetworkInspect(ctx, network, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network still there: %v", err)
	}
	if now := a.allocator.Snapshot(); fmt.Sprintf("%+v", now) != fmt.Sprintf("%+v", before) {
		t.Errorf("allocation not back to where it started:\n got %+v\nwant %+v", now, before)
	}
	if n := a.ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
}

// createKernel makes one busybox kernel over create_kernels.
func (a *opsAgent) createKernel(t *testing.T, ctx context.Context) (sid, kid string, ref mpExt, created wiremsg.Map) {
	t.Helper()
	sid, kid = randomUUID(), randomUUID()
	ref = pickleImageRef("busybox", "baiagent-test", "latest", "cr.example.com", kernel.NodeArchitecture(), true)
	cfg := managerConfig(t, kid, sid, a.image).with("mounts", []any{}).with("auto_pull", pickleEnum("AutoPullBehavior", "none"))
	got, err := a.call(ctx, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, map[string]mpExt{kid: ref})...)
	if err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	return sid, kid, ref, got.([]any)[0].(wiremsg.Map)
}

// execStdout runs code in a kernel over RPC and returns its stdout.
func (a *opsAgent) execStdout(t *testing.T, ctx context.Context, sid, kid, code string) string {
	t.Helper()
	got, err := a.call(ctx, "execute", sid, kid, int64(4), fmt.Sprintf("run-%d", rand.Uint64()), "query", code, obj(), 10.0)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	var out strings.Builder
	for _, item := range got.(wiremsg.Map)["console"].([]any) {
		if pair := item.([]any); pair[0] == "stdout" {
			out.WriteString(pair[1].(string))
		}
	}
	return out.String()
}

// TestRestartKernelOverRPC: restart_kernel answers the new container and
// ports; the kernel keeps its files and takes the updated environment.
func TestRestartKernelOverRPC(t *testing.T) {
	a := newOpsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid, kid, ref, created := a.createKernel(t, ctx)
	if out := a.execStdout(t, ctx, sid, kid, "echo kept > /home/work/kept.txt; echo $GREETING"); out != "from-manager\n" {
		t.Fatalf("before restart: %q", out)
	}

	got, err := a.call(ctx, "restart_kernel", sid, kid, ref, obj("environ", obj("GREETING", "restarted"), "resource_slots", obj("cpu", "1", "mem", "268435456")))
	if err != nil {
		t.Fatalf("restart_kernel: %v", err)
	}
	res := got.(wiremsg.Map)
	in, _ := res["repl_in_port"].(int64)
	if res["container_id"] == created["container_id"] || res["container_id"] == "" || in == 0 || res["stdin_port"] != int64(0) {
		t.Errorf("restart_kernel result %#v (created %#v)", res, created)
	}
	if sp, _ := res["service_ports"].([]any); len(sp) != 2 || sp[0].(wiremsg.Map)["name"] != "sshd" || sp[1].(wiremsg.Map)["name"] != "web" {
		t.Errorf("service ports %#v", res["service_ports"])
	}
	if info, err := a.manager.Get(kid); err != nil || info.ContainerID != res["container_id"] || int64(info.ReplInPort) != in {
		t.Errorf("kernel after restart %+v, %v; result %#v", info, err, res)
	}
	if out := a.execStdout(t, ctx, sid, kid, "cat /home/work/kept.txt; echo $GREETING"); out != "kept\nrestarted\n" {
		t.Errorf("after restart: %q", out)
	}
	if _, err := a.call(ctx, "destroy_kernel", kid, sid, nil); err != nil {
		t.Fatal(err)
	}
	if n := a.ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
}

// TestCommitOverRPC: commit answers a bgtask id at once and reports the
// task's end by event; the image or tar is where commit said; bad
// arguments and paths fail the call itself.
func TestCommitOverRPC(t *testing.T) {
	a := newOpsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid, kid, _, _ := a.createKernel(t, ctx)
	if out := a.execStdout(t, ctx, sid, kid, "echo from-rpc > /tmp/marker; echo ok"); out != "ok\n" {
		t.Fatalf("execute: %q", out)
	}
	canonical := fmt.Sprintf("baiagent-test/rpc-commit-%d:v1", rand.Uint64())
	t.Cleanup(func() {
		_, _ = a.docker.ImageRemove(context.Background(), canonical, client.ImageRemoveOptions{Force: true})
	})
	const subdir = "user@example.com"

	for _, tc := range []struct {
		description string
		args        []any
		kwargs      kv
		name, text  string
	}{
		{"a parent subdir", []any{kid, ".."}, nil, "ValueError", ".."},
		{"a subdir with a separator", []any{kid, "a/b"}, nil, "ValueError", "single path component"},
		{"a filename climbing out", []any{kid, subdir}, obj("filename", "../../etc/x.tar"), "ValueError", "../../etc/x.tar"},
		{"canonical given positionally", []any{kid, subdir, canonical}, nil, "TypeError", "takes 3 positional"},
		{"an int subdir", []any{kid, 5}, nil, "TypeError", "'subdir' must be str"},
		{"a label that is not a str", []any{kid, subdir}, obj("extra_labels", obj("k", 1)), "TypeError", "extra_labels"},
		{"an unknown kernel", []any{randomUUID(), subdir}, nil, "KernelNotFoundError", "kernel not found"},
	} {
		got, err := invokeRaw(ctx, a.rpc, "commit", tc.args, tc.kwargs)
		wantFailure(t, tc.description, got, err, tc.name, tc.text)
	}
	if entries, _ := os.ReadDir(a.commitPath); len(entries) != 0 {
		t.Errorf("refused commits left %v in the commit path", entries)
	}
	got, err := a.call(ctx, "get_commit_status", kid, "..")
	wantFailure(t, "status of a parent subdir", got, err, "ValueError", "..")

	// To an image, then to a tar.
	got, err = invokeRaw(ctx, a.rpc, "commit", []any{kid, subdir}, obj("canonical", canonical, "extra_labels", obj("com.example.by", "rpc")))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	res := got.(wiremsg.Map)
	task, _ := res["bgtask_id"].(string)
	if _, err := wiremsg.ParseUUID(task); err != nil || res["kernel"] != kid || res["path"] != nil {
		t.Errorf("commit result %#v", res)
	}
	a.ops.Wait()
	names, evs := a.events.take()
	if len(names) != 2 || names[0] != "bgtask_updated" || names[1] != "bgtask_done" || evs[1].(events.BgtaskDone).TaskID != task {
		t.Errorf("events %v %+v, want bgtask_updated and bgtask_done for %s", names, evs, task)
	}
	if img, err := a.docker.ImageInspect(ctx, canonical); err != nil || img.Config.Labels["com.example.by"] != "rpc" {
		t.Errorf("committed image: %v (labels %v)", err, img.Config)
	}
	if got, err := a.call(ctx, "get_commit_status", kid, subdir); err != nil || got.(wiremsg.Map)["status"] != "ready" || got.(wiremsg.Map)["kernel"] != kid {
		t.Errorf("get_commit_status after the commit: %#v, %v", got, err)
	}

	got, err = invokeRaw(ctx, a.rpc, "commit", []any{kid, subdir}, obj("filename", "snap.tar.gz"))
	if err != nil {
		t.Fatalf("commit to a file: %v", err)
	}
	if res := got.(wiremsg.Map); res["path"] != subdir+"/snap.tar.gz" {
		t.Errorf("commit result %#v, want path %s/snap.tar.gz", res, subdir)
	}
	a.ops.Wait()
	if names, _ := a.events.take(); len(names) != 2 || names[1] != "bgtask_done" {
		t.Errorf("events %v", names)
	}
	if st, err := os.Stat(filepath.Join(a.commitPath, subdir, "snap.tar.gz")); err != nil || st.Size() == 0 {
		t.Errorf("the tar: %v", err)
	}

	// A commit Docker refuses (an invalid reference) fails its task.
	_, err = invokeRaw(ctx, a.rpc, "commit", []any{kid, subdir}, obj("canonical", "Not/A:Valid:Ref"))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	a.ops.Wait()
	names, evs = a.events.take()
	if len(names) != 2 || names[1] != "bgtask_failed" || evs[1].(events.BgtaskFailed).Message == "" {
		t.Errorf("events %v %+v, want bgtask_failed with a message", names, evs)
	}
	if got, err := a.call(ctx, "get_commit_status", kid, subdir); err != nil || got.(wiremsg.Map)["status"] != "ready" {
		t.Errorf("get_commit_status after a failed commit: %#v, %v", got, err)
	}
	if _, err := a.call(ctx, "destroy_kernel", kid, sid, nil); err != nil {
		t.Fatal(err)
	}
}

// TestExecutionAndBgtaskEventsAsTheManagerReadsThem pins upstream's
// execute (agent/agent.py): execution_started before every execute call,
// execution_finished when the run finished, execution_timeout on
// exec-timeout followed by the kernel's destruction with reason
// exec-timeout; and commit's bgtask events as cached broadcasts
// (common/bgtask/bgtask.py, valkey_stream/client.py broadcast_with_cache).
// Everything is read back from a real Redis as the 26.8 manager reads it.
func TestExecutionAndBgtaskEventsAsTheManagerReadsThem(t *testing.T) {
	const execTimeout = 3 * time.Second
	a := newOpsAgentWith(t, opsAgentOptions{redis: true, execTimeout: execTimeout})
	reader := managertest.NewReader(t, a.redis.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid, kid, _, _ := a.createKernel(t, ctx)
	execute := func(runID, mode, code string, flush float64) wiremsg.Map {
		t.Helper()
		got, err := a.call(ctx, "execute", sid, kid, int64(4), runID, mode, code, obj(), flush)
		if err != nil {
			t.Fatalf("execute %s %q: %v", mode, code, err)
		}
		return got.(wiremsg.Map)
	}
	// streamSince returns the stream's execution_* and kernel_terminated
	// entries after the first n, each checked to name this session or kernel.
	streamSince := func(n int) []string {
		t.Helper()
		var names []string
		for _, ev := range reader.Stream()[n:] {
			want := sid
			if ev.Name == "kernel_terminated" {
				want = kid
			}
			if ev.Str(0) != want {
				t.Errorf("%s names %q, want %q", ev.Name, ev.Str(0), want)
			}
			names = append(names, ev.Name)
		}
		return names
	}
	seen := len(reader.Stream())

	steps := []struct {
		description string
		calls       func()
		want        []string
	}{
		{"a query that finishes in one call",
			func() {
				if res := execute("r1", "query", "echo hi", 10); res["status"] != "finished" {
					t.Fatalf("execute: %#v", res)
				}
			},
			[]string{"execution_started", "execution_finished"}},
		{"a run that continues: started for each call, finished once",
			func() {
				if res := execute("r2", "query", "sleep 1; echo done", 0.2); res["status"] != "continued" {
					t.Fatalf("first call: %#v", res)
				}
				for range 20 {
					if res := execute("r2", "continue", "", 0.5); res["status"] == "finished" {
						return
					}
				}
				t.Fatal("the run did not finish")
			},
			nil}, // checked below: started ≥ 2, then finished
	}
	for _, step := range steps {
		step.calls()
		got := streamSince(seen)
		seen += len(got)
		if step.want != nil && fmt.Sprint(got) != fmt.Sprint(step.want) {
			t.Errorf("%s: stream %v, want %v", step.description, got, step.want)
		}
		if step.want == nil {
			last := len(got) - 1
			if len(got) < 3 || got[last] != "execution_finished" || slices.Contains(got[:last], "execution_finished") {
				t.Errorf("%s: stream %v, want execution_started per call then one execution_finished", step.description, got)
			}
		}
	}

	// commit: bgtask_updated (int progress), then bgtask_done, which the
	// cache keeps for the manager's late subscribers.
	got, err := invokeRaw(ctx, a.rpc, "commit", []any{kid, "user@example.com"}, obj("filename", "snap.tar.gz"))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	task := got.(wiremsg.Map)["bgtask_id"].(string)
	a.ops.Wait()
	isTask := func(name string) func(managertest.Event) bool {
		return func(ev managertest.Event) bool { return ev.Name == name && ev.Str(0) == task }
	}
	started := reader.WaitBroadcast(10*time.Second, isTask("bgtask_updated"))
	if started.Int(1) != 0 || started.Int(2) != 0 || started.Str(3) != "Task started" {
		t.Errorf("bgtask_updated args %#v, want (id, 0, 0, \"Task started\") with int progress", started.Args)
	}
	reader.WaitBroadcast(10*time.Second, isTask("bgtask_done"))
	cached, ttl, err := reader.BgtaskCache(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if cached.Name != "bgtask_done" || ttl <= 0 || ttl > events.CacheTTL {
		t.Errorf("bgtask.%s holds %s with TTL %v, want bgtask_done with 0 < TTL <= 300s", task, cached.Name, ttl)
	}

	// A run past the exec timeout: execution_timeout, and the kernel is
	// destroyed with reason exec-timeout (the pickled enum member).
	start := time.Now()
	res := execute("r3", "query", "echo slow; sleep 60", 30)
	if res["status"] != "exec-timeout" || res["exitCode"] != nil {
		t.Errorf("execute past the exec timeout: %#v", res)
	}
	if took := time.Since(start); took < execTimeout || took > execTimeout+5*time.Second {
		t.Errorf("exec-timeout after %v, want about %v", took, execTimeout)
	}
	term := reader.WaitStream(30*time.Second, func(ev managertest.Event) bool {
		return ev.Name == "kernel_terminated" && ev.Str(0) == kid
	})
	if term.Reason(2) != string(lifecycle.ExecTimeout) || !term.ReasonIsEnum(2) || term.Str(1) != sid {
		t.Errorf("kernel_terminated args %#v, want (kernel, session, KernelLifecycleEventReason exec-timeout, code)", term.Args)
	}
	if got := streamSince(seen); fmt.Sprint(got) != fmt.Sprint([]string{"execution_started", "execution_timeout", "kernel_terminated"}) {
		t.Errorf("stream after the slow run %v, want execution_started, execution_timeout, kernel_terminated", got)
	}
	a.km.Wait()
	if _, err := a.manager.Get(kid); err == nil {
		t.Error("the kernel is still registered after exec-timeout")
	}
	if n := a.ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
}

// TestPushImageOverRPC pins upstream's push_image (agent/server.py
// push_image, agent/docker/agent.py DockerAgent.push_image): the answer is
// {bgtask_id, canonical} at once; a committed kernel's image pushed with
// the registry's credentials lands in the registry as the same image and
// ends in bgtask_done; a wrong password, or an image the node lacks, ends
// in bgtask_failed naming why; a local image is not pushed and its task
// is done. The bgtask events are read back from Redis as the 26.8 manager
// reads them (managertest, strictly).
func TestPushImageOverRPC(t *testing.T) {
	a := newOpsAgentWith(t, opsAgentOptions{redis: true, images: true})
	reader := managertest.NewReader(t, a.redis.Addr)
	reg := registrytest.Start(t, registryUser, registryPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sid, kid, _, _ := a.createKernel(t, ctx)
	if out := a.execStdout(t, ctx, sid, kid, "echo pushed > /home/work/marker; echo ok"); out != "ok\n" {
		t.Fatalf("execute: %q", out)
	}
	name := fmt.Sprintf("pushed-%d", rand.Uint64())
	canonical := reg.Host + "/test/" + name + ":1"
	t.Cleanup(func() {
		_, _ = a.docker.ImageRemove(context.Background(), canonical, client.ImageRemoveOptions{Force: true})
	})
	taskOf := func(got any) string {
		t.Helper()
		res := got.(wiremsg.Map)
		task, _ := res["bgtask_id"].(string)
		if _, err := wiremsg.ParseUUID(task); err != nil {
			t.Fatalf("bgtask_id %#v: %v", res["bgtask_id"], err)
		}
		return task
	}
	// last waits for the task's bgtask_done or bgtask_failed broadcast.
	last := func(task string) managertest.Event {
		t.Helper()
		return reader.WaitBroadcast(2*time.Minute, func(ev managertest.Event) bool {
			return (ev.Name == "bgtask_done" || ev.Name == "bgtask_failed" || ev.Name == "bgtask_cancelled") && ev.Str(0) == task
		})
	}
	got, err := invokeRaw(ctx, a.rpc, "commit", []any{kid, "user@example.com"}, obj("canonical", canonical))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if ev := last(taskOf(got)); ev.Name != "bgtask_done" {
		t.Fatalf("commit ended in %s %v", ev.Name, ev.Args)
	}
	committed, err := a.docker.ImageInspect(ctx, canonical)
	if err != nil {
		t.Fatalf("the committed image: %v", err)
	}

	registryConf := func(password string) kv {
		return obj("name", reg.Host, "url", "http://"+reg.Host, "username", registryUser, "password", password)
	}
	for _, tc := range []struct {
		description string
		ref         mpExt
		conf        kv
		wantEvent   string
		wantText    []string // in bgtask_failed's message
		wantPushed  bool     // the registry has the committed image afterwards
	}{
		{"a wrong password", pickleImageRef(name, "test", "1", reg.Host, kernel.NodeArchitecture(), false), registryConf("wrong"),
			"bgtask_failed", []string{canonical, reg.Host, "authentication failed"}, false},
		{"an image the node lacks", pickleImageRef(name, "test", "absent", reg.Host, kernel.NodeArchitecture(), false), registryConf(registryPassword),
			"bgtask_failed", []string{reg.Host + "/test/" + name + ":absent"}, false},
		{"a local image is not pushed", pickleImageRef(name, "test", "1", reg.Host, kernel.NodeArchitecture(), true), registryConf("wrong"),
			"bgtask_done", nil, false},
		{"the committed image with the registry's credentials", pickleImageRef(name, "test", "1", reg.Host, kernel.NodeArchitecture(), false), registryConf(registryPassword),
			"bgtask_done", nil, true},
	} {
		got, err := a.call(ctx, "push_image", tc.ref, tc.conf)
		if err != nil {
			t.Fatalf("%s: push_image: %v", tc.description, err)
		}
		if c := got.(wiremsg.Map)["canonical"]; !strings.HasPrefix(fmt.Sprint(c), reg.Host+"/test/"+name+":") {
			t.Errorf("%s: canonical %#v", tc.description, c)
		}
		task := taskOf(got)
		ev := last(task)
		if ev.Name != tc.wantEvent {
			t.Errorf("%s: ended in %s %v, want %s", tc.description, ev.Name, ev.Args, tc.wantEvent)
		}
		for _, want := range tc.wantText {
			if msg := ev.Str(1); !strings.Contains(msg, want) {
				t.Errorf("%s: bgtask_failed message %q does not name %q", tc.description, msg, want)
			}
		}
		if cached, _, err := reader.BgtaskCache(ctx, task); err != nil || cached.Name != tc.wantEvent {
			t.Errorf("%s: bgtask.%s cache holds %s (%v), want %s", tc.description, task, cached.Name, err, tc.wantEvent)
		}
		config, err := reg.ConfigDigest(ctx, "test/"+name+":1")
		if pushed := err == nil; pushed != tc.wantPushed {
			t.Errorf("%s: registry has the image: %v (%v), want %v", tc.description, pushed, err, tc.wantPushed)
		}
		if tc.wantPushed && config != committed.ID {
			t.Errorf("%s: the registry's image is %s, the committed one %s", tc.description, config, committed.ID)
		}
	}
	if _, err := a.call(ctx, "destroy_kernel", kid, sid, nil); err != nil {
		t.Fatal(err)
	}
}
