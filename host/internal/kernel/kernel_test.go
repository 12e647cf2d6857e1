package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/proto/sdk"
)

// env is one simulated agent's surroundings: the real Docker engine (or
// the fake, newFakeEnv), the real cpu plugin, a port pool and a scratch
// root.
type env struct {
	engine kernel.Engine
	// docker is the engine's client; nil on the fake.
	docker      *client.Client
	image       string
	runnerPath  string
	plugins     *pluginhost.Host
	allocator   *alloc.Allocator
	ports       *portpool.Pool
	portMin     int
	agentID     string
	scratchRoot string

	mu           sync.Mutex
	terminations []kernel.Termination
}

func newEnv(t testing.TB) *env {
	t.Helper()
	docker := kerneltest.Docker(t)
	e := &env{engine: kernel.NewDockerEngine(docker), docker: docker, agentID: fmt.Sprintf("test-agent-%d", rand.Uint64())}
	e.image = kerneltest.BuildBusybox(t, docker)
	e.runnerPath = kerneltest.RunnerBinary(t)
	e.plugins, e.allocator = kerneltest.CPUPlugin(t)
	e.portMin = kerneltest.RandomPortBase()
	e.ports = kerneltest.PortsAt(t, e.portMin)
	e.scratchRoot = t.TempDir()
	t.Cleanup(func() {
		kerneltest.RemoveLabelled(t, docker, kernel.LabelAgentID, e.agentID)
		if left := kerneltest.ScratchEntries(t, e.scratchRoot); len(left) > 0 {
			t.Errorf("scratch dirs left behind: %v", left)
		}
	})
	return e
}

// manager makes a manager over e; each option may change its config.
func (e *env) manager(t testing.TB, options ...func(*kernel.Config)) *kernel.Manager {
	t.Helper()
	cfg := kernel.Config{
		AgentID: e.agentID, ScratchRoot: e.scratchRoot, KernelUID: 1000, KernelGID: 1000,
		RunnerPath: e.runnerPath, CreationConcurrency: 4, StopTimeout: 2 * time.Second,
		ReconcileInterval: 500 * time.Millisecond,
		OnTerminated: func(term kernel.Termination) {
			e.mu.Lock()
			e.terminations = append(e.terminations, term)
			e.mu.Unlock()
		},
		Engine: e.engine, Allocator: e.allocator, Plugins: e.plugins, Ports: e.ports, Logger: zerolog.Nop(),
	}
	for _, option := range options {
		option(&cfg)
	}
	m, err := kernel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// start recovers and runs the manager's event loop until the test ends.
func start(t testing.TB, m *kernel.Manager) kernel.RecoverReport {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	report, err := m.Recover(ctx)
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	return report
}

func (e *env) termination(kernelID string) (kernel.Termination, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, term := range e.terminations {
		if term.KernelID == kernelID {
			return term, true
		}
	}
	return kernel.Termination{}, false
}

func request(id string) kernel.CreateRequest {
	return kernel.CreateRequest{
		KernelID: id, SessionID: "sess-" + id, Image: kerneltest.BusyboxImage,
		ResourceSlots: map[string]decimal.Decimal{"cpu": decimal.NewFromInt(1), "mem": decimal.NewFromInt(256 << 20)},
		Env:           map[string]string{"GREETING": "from-manager"},
		OwnerUserID:   "user-1", OwnerProjectID: "project-1",
	}
}

func create(t testing.TB, m *kernel.Manager, req kernel.CreateRequest) kernel.Created {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	created, err := m.Create(ctx, req)
	if err != nil {
		t.Fatalf("create %s: %v", req.KernelID, err)
	}
	return created
}

// run executes until the run finishes or waits for input.
func run(t *testing.T, m *kernel.Manager, kernelID, runID, mode, code string) runnerclient.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var all runnerclient.Result
	for {
		res, err := m.Execute(ctx, kernelID, runID, mode, code, runnerclient.ExecOptions{FlushTimeout: time.Second})
		if err != nil {
			t.Fatalf("execute %q: %v", code, err)
		}
		all.Status, all.ExitCode = res.Status, res.ExitCode
		all.Console = append(all.Console, res.Console...)
		if res.Status != runnerclient.StatusContinued {
			return all
		}
		mode = runnerclient.ModeContinue
	}
}

func stdout(res runnerclient.Result) string { return consoleOf(res, "stdout") }

// consoleOf joins the run's console items of one type (stdout, stderr).
func consoleOf(res runnerclient.Result, typ string) string {
	var b strings.Builder
	for _, item := range res.Console {
		if item.Type == typ {
			b.WriteString(item.Data)
		}
	}
	return b.String()
}

func wantOutput(t *testing.T, res runnerclient.Result, exitCode int, out string) {
	t.Helper()
	if res.Status != runnerclient.StatusFinished || res.ExitCode == nil || *res.ExitCode != exitCode || stdout(res) != out {
		t.Fatalf("got status %s exit %v console %q; want finished exit %d stdout %q", res.Status, deref(res.ExitCode), res.Console, exitCode, out)
	}
}

// sameUsage compares snapshots by value: equal decimals may differ in
// representation (0 and 0e-2), which DeepEqual would see.
func sameUsage(a, b []alloc.SlotUsage) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// idle checks that the allocator and the port pool hold nothing.
func (e *env) wantIdle(t *testing.T, allocator *alloc.Allocator, ports *portpool.Pool, before []alloc.SlotUsage) {
	t.Helper()
	if got := allocator.Snapshot(); !sameUsage(got, before) {
		t.Errorf("allocation not back to where it started:\n got %+v\nwant %+v", got, before)
	}
	if n := ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
}

func TestKernelLifecycle(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	created := create(t, m, request(e.kid("k-life")))
	if len(created.ServicePorts) != 2 || created.ServicePorts[0].Name != "sshd" || created.ServicePorts[1].Name != "web" ||
		len(created.ServicePorts[0].HostPorts) != 1 || len(created.ServicePorts[1].HostPorts) != 1 {
		t.Fatalf("service ports %+v, want the intrinsic sshd and web with one host port each", created.ServicePorts)
	}
	if got := e.ports.InUse(); got != 4 {
		t.Fatalf("%d ports in use, want 4 (repl in/out, sshd, web)", got)
	}
	if sameUsage(e.allocator.Snapshot(), before) {
		t.Fatal("creation did not allocate anything")
	}

	data, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", scratch.ResourceFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CPU_SHARES=", "MEM_SHARES=root:256m", "SLOTS={", "MOUNTS=", "CID=" + created.ContainerID} {
		if !strings.Contains(string(data), want) {
			t.Errorf("resource.txt lacks %q:\n%s", want, data)
		}
	}
	insp, err := e.docker.ContainerInspect(context.Background(), created.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := insp.Container
	if c.Name != "/kernel.busybox."+e.kid("k-life") || c.Config.Labels[kernel.LabelKernelID] != e.kid("k-life") ||
		c.Config.Labels[kernel.LabelSessionID] != "sess-"+e.kid("k-life") || c.Config.Labels[kernel.LabelServicePorts] != "web:http:8080" ||
		c.Config.User != "0:0" || c.Config.StopSignal != "SIGINT" ||
		c.HostConfig.Memory != 256<<20 || c.HostConfig.MemorySwap != 256<<20 || c.HostConfig.CpusetCpus == "" {
		t.Errorf("container settings: name %s labels %v user %s stop %s mem %d swap %d cpuset %q",
			c.Name, c.Config.Labels, c.Config.User, c.Config.StopSignal, c.HostConfig.Memory, c.HostConfig.MemorySwap, c.HostConfig.CpusetCpus)
	}

	wantOutput(t, run(t, m, e.kid("k-life"), "r1", runnerclient.ModeQuery, "echo hello"), 0, "hello\n")
	wantOutput(t, run(t, m, e.kid("k-life"), "r2", runnerclient.ModeQuery,
		"count=0\nfor w in a b c; do\n  count=$((count+1))\n  echo \"$count $w\"\ndone\nid -u\necho $GREETING"), 0,
		"1 a\n2 b\n3 c\n1000\nfrom-manager\n")
	wantOutput(t, run(t, m, e.kid("k-life"), "r3", runnerclient.ModeQuery, "echo count=$count; pwd"), 0, "count=3\n/home/work\n")

	res := run(t, m, e.kid("k-life"), "r4", runnerclient.ModeQuery, "read name\necho \"hi $name\"")
	if res.Status != runnerclient.StatusWaitingInput {
		t.Fatalf("read: status %s, want waiting-input", res.Status)
	}
	wantOutput(t, run(t, m, e.kid("k-life"), "r4", runnerclient.ModeInput, "kernel"), 0, "hi kernel\n")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err = m.Execute(ctx, e.kid("k-life"), "r5", runnerclient.ModeQuery, "while true; do echo tick; sleep 0.1; done",
		runnerclient.ExecOptions{FlushTimeout: 700 * time.Millisecond})
	if err != nil || res.Status != runnerclient.StatusContinued || !strings.Contains(stdout(res), "tick") {
		t.Fatalf("loop: %+v, %v", res, err)
	}
	if err := m.Interrupt(ctx, e.kid("k-life")); err != nil {
		t.Fatal(err)
	}
	res = run(t, m, e.kid("k-life"), "r5", runnerclient.ModeContinue, "")
	if res.Status != runnerclient.StatusFinished || res.ExitCode == nil || *res.ExitCode == 0 {
		t.Fatalf("interrupted loop: status %s exit %v", res.Status, deref(res.ExitCode))
	}
	wantOutput(t, run(t, m, e.kid("k-life"), "r6", runnerclient.ModeQuery, "echo still $count"), 0, "still 3\n")

	term, err := m.Destroy(ctx, e.kid("k-life"), "")
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if term.Reason != lifecycle.UserRequested {
		t.Errorf("termination %+v, want reason %s", term, lifecycle.UserRequested)
	}
	if _, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{}); err == nil {
		t.Error("container still exists after destroy")
	}
	if _, err := os.Stat(created.ScratchDir); !os.IsNotExist(err) {
		t.Errorf("scratch dir still exists after destroy: %v", err)
	}
	if _, err := m.Get(e.kid("k-life")); !errors.Is(err, kernel.ErrKernelNotFound) {
		t.Errorf("registry still has the kernel: %v", err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// A validation and state test: on the fake engine, which refuses a
// missing bind source as Docker does (enginetest's contract) and runs no
// runner, so that a creation waiting for one times out.
func TestCreateFailuresReleaseEverything(t *testing.T) {
	e, _ := newFakeEnv(t)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	tooBig := request(e.kid("k-big"))
	tooBig.ResourceSlots["mem"] = decimal.New(1, 18) // an exabyte
	if _, err := m.Create(ctx, tooBig); !errors.Is(err, alloc.ErrInsufficientResource) {
		t.Errorf("oversized request: %v, want ErrInsufficientResource", err)
	}
	noImage := request(e.kid("k-noimg"))
	noImage.Image = "baiagent-test/no-such-image:latest"
	if _, err := m.Create(ctx, noImage); !errors.Is(err, kernel.ErrImageNotFound) {
		t.Errorf("missing image: %v, want ErrImageNotFound", err)
	}
	noCPU := request(e.kid("k-nocpu"))
	delete(noCPU.ResourceSlots, "cpu")
	if _, err := m.Create(ctx, noCPU); !errors.Is(err, kernel.ErrInvalidRequest) {
		t.Errorf("no cpu slot: %v, want ErrInvalidRequest", err)
	}
	// Docker refuses the bind mount after allocation, scratch dir and
	// ports were taken: all of them must come back.
	badMount := request(e.kid("k-badmount"))
	badMount.Mounts = []scratch.Mount{{Source: "/nonexistent/baiagent-test", Target: "/mnt/data"}}
	if _, err := m.Create(ctx, badMount); err == nil {
		t.Error("a create with a missing bind source succeeded")
	}
	if got := m.List(); len(got) != 0 {
		t.Errorf("registry after failed creations: %+v", got)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
	e.mu.Lock()
	if len(e.terminations) != 0 {
		t.Errorf("failures before the container started reported terminations: %+v", e.terminations)
	}
	e.mu.Unlock()

	// A failure after the container started (its runner does not answer in
	// time) also ends in a termination with failed-to-start, which the
	// agent sends as kernel_terminated, as upstream destroys such a kernel
	// with FAILED_TO_START (agent/agent.py create_kernel).
	// Another agent id, so that the first manager's reconciliation does not
	// take the new container for a stray one of its own.
	e2, _ := newFakeEnv(t)
	impatient := e2.manager(t, func(cfg *kernel.Config) { cfg.RunnerStartTimeout = time.Millisecond })
	start(t, impatient)
	before = e2.allocator.Snapshot()
	if _, err := impatient.Create(ctx, request(e.kid("k-mute"))); !errors.Is(err, kernel.ErrRunnerTimeout) {
		t.Errorf("runner timeout: %v, want ErrRunnerTimeout", err)
	}
	term, ok := e2.termination(e.kid("k-mute"))
	if !ok || term.Reason != lifecycle.FailedToStart || term.ExitCode != -1 || term.SessionID != "sess-"+e.kid("k-mute") || term.ReasonVerbatim {
		t.Errorf("termination %+v (%v), want failed-to-start with exit code -1", term, ok)
	}
	e2.wantIdle(t, e2.allocator, e2.ports, before)
}

func TestRecoverAfterAgentRestart(t *testing.T) {
	e := newEnv(t)
	first := e.manager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := first.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.allocator.Snapshot()
	alive := create(t, first, request(e.kid("k-alive")))
	dying := create(t, first, request(e.kid("k-dying")))
	wantOutput(t, run(t, first, e.kid("k-alive"), "set", runnerclient.ModeQuery, "remembered=across-restart; echo set"), 0, "set\n")

	// The agent goes away without destroying anything (as after SIGKILL),
	// and one kernel dies while no agent watches.
	first.Close()
	stopTimeout := 1
	if _, err := e.docker.ContainerStop(ctx, dying.ContainerID, client.ContainerStopOptions{Timeout: &stopTimeout}); err != nil {
		t.Fatal(err)
	}

	// A new agent: fresh allocator over the same plugins, fresh port pool.
	e.allocator = kerneltest.NewAllocator(t, e.plugins)
	e.ports = kerneltest.PortsAt(t, e.portMin)
	second := e.manager(t)
	report := start(t, second)
	if !reflect.DeepEqual(report.Recovered, []string{e.kid("k-alive")}) {
		t.Errorf("recovered %v, want [k-alive]", report.Recovered)
	}
	if len(report.Terminated) != 1 || report.Terminated[0].KernelID != e.kid("k-dying") {
		t.Errorf("terminated %+v, want k-dying", report.Terminated)
	}
	if _, err := os.Stat(dying.ScratchDir); !os.IsNotExist(err) {
		t.Errorf("dead kernel's scratch dir survived recovery: %v", err)
	}
	// The survivor holds exactly what it held before; the dead one nothing.
	if err := e.allocator.Free(alive.Allocation); err != nil {
		t.Fatalf("recovered allocation does not match the original: %v", err)
	}
	if got := e.allocator.Snapshot(); !sameUsage(got, before) {
		t.Errorf("recovered allocation differs from the kernel's:\n got %+v\nwant %+v", got, before)
	}
	if err := e.allocator.Apply(alive.Allocation); err != nil {
		t.Fatal(err)
	}
	if got := e.ports.InUse(); got != 4 {
		t.Errorf("%d ports reserved after recovery, want 4", got)
	}
	info, err := second.Get(e.kid("k-alive"))
	if err != nil || info.ContainerID != alive.ContainerID {
		t.Fatalf("recovered kernel %+v, %v", info, err)
	}
	wantOutput(t, run(t, second, e.kid("k-alive"), "get", runnerclient.ModeQuery, "echo $remembered"), 0, "across-restart\n")

	if _, err := second.Destroy(ctx, e.kid("k-alive"), ""); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestKernelWithFakeGPUs creates a kernel asking for cuda.device 2 on the
// dev config's fake A100s: the cuda plugin's container spec reaches the
// container, resource.txt records the GPUs, and destroy gives them back.
func TestKernelWithFakeGPUs(t *testing.T) {
	e := newEnv(t)
	e.plugins, e.allocator = kerneltest.Plugins(t, kerneltest.WithFakeGPUs(t))
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	req := request(e.kid("k-gpu"))
	req.ResourceSlots["cuda.device"] = decimal.NewFromInt(2)
	created := create(t, m, req)
	if devs := created.Attached["cuda"]; len(devs) != 2 || devs[0].ModelName == "" {
		t.Fatalf("attached devices %+v, want the two fake A100s", created.Attached)
	}
	insp, err := e.docker.ContainerInspect(context.Background(), created.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range insp.Container.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["CUDA_VISIBLE_DEVICES"] != "0,1" || strings.Count(env["NVIDIA_VISIBLE_DEVICES"], "GPU-") != 2 {
		t.Fatalf("GPU env: CUDA_VISIBLE_DEVICES=%q NVIDIA_VISIBLE_DEVICES=%q", env["CUDA_VISIBLE_DEVICES"], env["NVIDIA_VISIBLE_DEVICES"])
	}
	data, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", scratch.ResourceFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CUDA.DEVICE_SHARES=0:1,1:1", "CUDA_GLOBAL_DEVICE_IDS="} {
		if !strings.Contains(string(data), want) {
			t.Errorf("resource.txt lacks %q:\n%s", want, data)
		}
	}
	// The kernel sees the variables too.
	wantOutput(t, run(t, m, e.kid("k-gpu"), "r1", runnerclient.ModeQuery, "echo $CUDA_VISIBLE_DEVICES"), 0, "0,1\n")

	// The GPU_* variables upstream's create_kernel derives from the
	// attached devices (agent/agent.py, 26.8.1; model_name and data.mem
	// as accelerator/cuda_open/plugin.py reports them).
	devs := created.Attached["cuda"]
	var mems, mibs []string
	for i, d := range devs {
		mem := decimal.RequireFromString(d.Data["mem"])
		mems = append(mems, fmt.Sprintf("%d:%s", i, sdk.FormatBinarySize(mem)))
		mibs = append(mibs, fmt.Sprintf("%d:%s", i, mem.Div(decimal.NewFromInt(1<<20)).Floor()))
	}
	wantGPU := map[string]string{"GPU_TYPE": "cuda", "GPU_MODEL_NAME": devs[0].ModelName, "GPU_CONFIG": strings.Join(mems, ","),
		"TF_GPU_MEMORY_ALLOC": strings.Join(mibs, ","), "GPU_COUNT": "2", "N_GPUS": "2"}
	for k, v := range wantGPU {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if !strings.HasSuffix(wantGPU["GPU_CONFIG"], "g") {
		t.Errorf("GPU_CONFIG %q: the fake A100s' memory in BinarySize", wantGPU["GPU_CONFIG"])
	}
	wantOutput(t, run(t, m, e.kid("k-gpu"), "r2", runnerclient.ModeQuery, "echo $GPU_TYPE $GPU_COUNT $N_GPUS $GPU_CONFIG"), 0,
		"cuda 2 2 "+wantGPU["GPU_CONFIG"]+"\n")

	if _, err := m.Destroy(context.Background(), e.kid("k-gpu"), "user-requested"); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestAttachedDevicesKeyedByKind: with the cuda plugin installed under
// another name ("nvidia"), a kernel's attached devices are still keyed
// "cuda", the device kind its allocation and the heartbeat's slots use, as
// upstream's create_kernel keys attached_devices by allocation key
// (agent/agent.py).
func TestAttachedDevicesKeyedByKind(t *testing.T) {
	e := newEnv(t)
	cfg := kerneltest.WithFakeGPUs(t)
	e.plugins, e.allocator = kerneltest.PluginsAs(t, map[string]map[string]any{"nvidia": cfg["cuda"]},
		map[string]string{"nvidia": "github.com/baiagent/baiagent/plugins/cuda/cmd/baiagent-plugin-cuda"})
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	req := request(e.kid("k-renamed"))
	req.ResourceSlots["cuda.device"] = decimal.NewFromInt(1)
	created := create(t, m, req)
	if _, ok := created.Allocation["cuda"]; !ok {
		t.Fatalf("allocation %+v has no cuda kind", created.Allocation)
	}
	if devs := created.Attached["cuda"]; len(devs) != 1 || devs[0].ModelName == "" || len(created.Attached) != 1 {
		t.Errorf("attached devices %+v, want one fake A100 under \"cuda\" only", created.Attached)
	}
	if _, err := m.Destroy(context.Background(), e.kid("k-renamed"), "user-requested"); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestKernelWithFractionalGPUShares exercises upstream's mock-accelerator
// case end to end: the cuda plugin in fractional mode gives cuda.shares,
// and a kernel gets a fraction of the fake GPUs.
func TestKernelWithFractionalGPUShares(t *testing.T) {
	e := newEnv(t)
	cfg := kerneltest.WithFakeGPUs(t)
	cfg["cuda"]["allocation-mode"] = "fractional"
	e.plugins, e.allocator = kerneltest.Plugins(t, cfg)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	req := request(e.kid("k-frac"))
	req.ResourceSlots["cuda.shares"] = decimal.RequireFromString("1.5")
	created := create(t, m, req)
	data, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", scratch.ResourceFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CUDA.SHARES_SHARES=", "CUDA_RESOURCE_VIRTUALIZED=1", "CUDA_MEMORY_LIMITS="} {
		if !strings.Contains(string(data), want) {
			t.Errorf("resource.txt lacks %q:\n%s", want, data)
		}
	}
	var total decimal.Decimal
	for _, u := range e.allocator.Snapshot() {
		if u.Slot == "cuda.shares" {
			total = u.Allocated
		}
	}
	if !total.Equal(decimal.RequireFromString("1.5")) {
		t.Fatalf("cuda.shares allocated %s, want 1.5", total)
	}
	if _, err := m.Destroy(context.Background(), e.kid("k-frac"), "user-requested"); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// kid makes a kernel id unique to this env, so that test runs sharing a
// Docker daemon never clash on container names or kernel labels.
func (e *env) kid(name string) string {
	return name + "-" + strings.TrimPrefix(e.agentID, "test-agent-")
}
