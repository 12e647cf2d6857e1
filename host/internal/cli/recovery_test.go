package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// realAgent is a `baiagent server` process built from this checkout, as
// scripts/build.sh builds it, on a private agent.toml.
type realAgent struct {
	bin, binDir, config, scratch string
	agentID                      string
	rpcAddr, internalAddr, ipc   string
	portMin, portMax             int
	cmd                          *exec.Cmd
	exited                       chan struct{}
	logs                         *testutil.SyncBuffer
}

// buildAgent builds bin/baiagent, the kernel runner and the cpu plugin into
// a temp tree and writes an agent.toml: embedded etcd, RPC and internal
// HTTP on free ports, every directory under the test's temp dirs, the cpu
// plugin with cpu-overcommit-factor 4 (several 1-cpu kernels on a 2-core
// machine) and a 16-port pool without reuse cooldown (the test empties it
// with assign_port to see which ports are free).
func buildAgent(t *testing.T) *realAgent {
	t.Helper()
	return buildAgentWith(t, "")
}

// buildAgentWith is buildAgent with extra agent.toml text appended (a
// [redis] section, say).
func buildAgentWith(t *testing.T, extraTOML string) *realAgent {
	t.Helper()
	root := testutil.ShortTempDir(t)
	bin := filepath.Join(root, "bin")
	plugins := filepath.Join(bin, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	// The agent itself links libzmq through cgo (CURVE), so it is built as
	// scripts/build.sh builds it; the runner and the plugin are static.
	build := exec.Command("go", "build", "-tags", testutil.BuildTags, "-o", filepath.Join(bin, "baiagent"), "github.com/baiagent/baiagent/host/cmd/baiagent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build baiagent: %v\n%s", err, out)
	}
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-kernel-runner", bin, "baiagent-kernel-runner")
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-etcd", bin, "baiagent-etcd")
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cpu/cmd/baiagent-plugin-cpu", plugins, "baiagent-plugin-cpu")

	a := &realAgent{
		bin: filepath.Join(bin, "baiagent"), binDir: bin, scratch: filepath.Join(t.TempDir(), "scratches"),
		agentID: fmt.Sprintf("i-recovery-%d", rand.Uint64()), ipc: filepath.Join(root, "ipc"),
		rpcAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1")), internalAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1")),
		portMin: kerneltest.RandomPortBase(),
	}
	a.portMax = a.portMin + 15
	vars := t.TempDir()
	toml := fmt.Sprintf(`[etcd]
namespace = "local"
addr = "127.0.0.1:%s"
embedded = true
data-dir = %q

[agent]
backend = "docker"
id = %q
rpc-listen-addr = %q
internal-addr = %q
var-base-path = %q
ipc-base-path = %q
plugin-runtime-dir = %q
skip-manager-detection = true
plugin-dirs = [%q]
allow-compute-plugins = ["cpu"]
kernel-runner-path = %q

[container]
bind-host = "127.0.0.1"
scratch-root = %q
port-range = [%d, %d]
port-reuse-cooldown-sec = 0           # assign_port probes the pool repeatedly

[resource]
reserved-cpu = 1
reserved-mem = "1G"

[logging]
level = "info"
format = "console"

[plugins.cpu]
cpu-overcommit-factor = 4
%s
`, strconv.Itoa(testutil.FreePort(t, "127.0.0.1")), filepath.Join(vars, "etcd"), a.agentID, a.rpcAddr, a.internalAddr, filepath.Join(vars, "lib"),
		a.ipc, filepath.Join(root, "run"), plugins, filepath.Join(bin, "baiagent-kernel-runner"), a.scratch, a.portMin, a.portMax, extraTOML)
	a.config = filepath.Join(vars, "agent.toml")
	if err := os.WriteFile(a.config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	docker := kerneltest.Docker(t)
	t.Cleanup(func() {
		a.kill()
		kerneltest.RemoveLabelled(t, docker, kernel.LabelAgentID, a.agentID)
	})
	return a
}

// start runs `baiagent server -f agent.toml` and waits for "agent started".
func (a *realAgent) start(t *testing.T) {
	t.Helper()
	a.logs = &testutil.SyncBuffer{}
	a.cmd = exec.Command(a.bin, "server", "-f", a.config)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BACKEND_") {
			a.cmd.Env = append(a.cmd.Env, kv)
		}
	}
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(exited) }()
	a.exited = exited
	deadline := time.After(90 * time.Second)
	for !strings.Contains(a.logs.String(), "agent started") {
		select {
		case <-exited:
			t.Fatalf("baiagent server exited: %v\n%s", a.cmd.ProcessState, a.logs.String())
		case <-deadline:
			t.Fatalf("baiagent server did not start:\n%s", a.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the server, if it runs, and waits for it.
func (a *realAgent) kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

// stop stops the server as an operator does (SIGTERM) and waits.
func (a *realAgent) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("baiagent server did not stop on SIGTERM:\n%s", a.logs.String())
	}
	if !a.cmd.ProcessState.Success() {
		t.Errorf("baiagent server exited with %v:\n%s", a.cmd.ProcessState, a.logs.String())
	}
	a.cmd = nil
}

func (a *realAgent) rpc(t *testing.T, use func(ctx context.Context, c *callosum.Client) error) {
	t.Helper()
	flags := &rpcFlags{addr: "tcp://" + a.rpcAddr, timeout: 2 * time.Minute, handshakeTimeout: 10 * time.Second}
	if err := withClient(context.Background(), flags, use); err != nil {
		t.Fatalf("rpc: %v\nagent log:\n%s", err, a.logs.String())
	}
}

// kernels is baiagent_list_kernels by kernel id.
func (a *realAgent) kernels(t *testing.T) map[string]wiremsg.Map {
	t.Helper()
	out := map[string]wiremsg.Map{}
	a.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		res, err := c.Invoke(ctx, rpcserver.MethodListKernels, nil, nil)
		for _, k := range kernelList(res) {
			out[k["id"].(string)] = k
		}
		return err
	})
	return out
}

// execute runs code in query mode and returns stdout.
func (a *realAgent) execute(t *testing.T, sessionID, kernelID, code string) string {
	t.Helper()
	var out strings.Builder
	a.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		res, err := c.Invoke(ctx, "execute", []any{sessionID, kernelID, int64(4), "r" + strconv.Itoa(rand.IntN(1e6)), "query", code, map[string]any{}, 10.0}, nil)
		if err != nil {
			return err
		}
		m := res.(wiremsg.Map)
		printConsole(&out, &out, m["console"])
		if m["status"] != "finished" || m["exitCode"] != int64(0) {
			return fmt.Errorf("execute %q in %s: %#v", code, kernelID, m)
		}
		return nil
	})
	return out.String()
}

// assignAll takes every port assign_port hands out, then gives them back.
func (a *realAgent) assignAll(t *testing.T) []int {
	t.Helper()
	var ports []int
	a.rpc(t, func(ctx context.Context, c *callosum.Client) error {
		for range a.portMax - a.portMin + 2 {
			p, err := c.Invoke(ctx, "assign_port", nil, nil)
			if err != nil {
				break // the pool is exhausted
			}
			ports = append(ports, int(p.(int64)))
		}
		for _, p := range ports {
			if _, err := c.Invoke(ctx, "release_port", []any{int64(p)}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	sort.Ints(ports)
	return ports
}

// allocated sums the live agent's allocations per slot (admin socket).
func (a *realAgent) allocated(t *testing.T) map[string]decimal.Decimal {
	t.Helper()
	admin, err := adminapi.Dial(adminapi.SocketPath(a.ipc))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.Resources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]decimal.Decimal{}
	for _, u := range res.Usage {
		out[u.Slot] = out[u.Slot].Add(u.Allocated)
	}
	return out
}

type agentEvent struct {
	Name string         `json:"name"`
	Body map[string]any `json:"body"`
}

func (a *realAgent) events(t *testing.T) []agentEvent {
	t.Helper()
	resp, err := http.Get("http://" + a.internalAddr + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs struct {
		Events []agentEvent `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&evs); err != nil {
		t.Fatal(err)
	}
	return evs.Events
}

func hostPorts(k wiremsg.Map) []int {
	ports := []int{int(k["repl_in_port"].(int64)), int(k["repl_out_port"].(int64))}
	for _, sp := range k["service_ports"].([]any) {
		for _, p := range sp.(wiremsg.Map)["host_ports"].([]any) {
			ports = append(ports, int(p.(int64)))
		}
	}
	return ports
}

// TestServerSIGKILLRecovery runs the real `baiagent server`, creates three
// kernels over its RPC, SIGKILLs it, lets one kernel die while no agent
// runs, and starts the server again on the same config: the two survivors
// are taken back (listed, executing in the same interpreter session as
// before, holding exactly their allocations and ports), the dead one is
// cleaned and reported, nothing is orphaned; then everything is destroyed
// and the agent is idle and clean.
func TestServerSIGKILLRecovery(t *testing.T) {
	docker := kerneltest.Docker(t)
	kerneltest.BuildBusybox(t, docker)
	a := buildAgent(t)
	a.start(t)
	idle := a.allocated(t)
	allPorts := a.assignAll(t)
	if len(allPorts) < 9 {
		t.Fatalf("only %d ports of [%d, %d] are free", len(allPorts), a.portMin, a.portMax)
	}

	env := testEnv(t, nil)
	sessions := map[string]string{}
	var ids []string
	started := regexp.MustCompile(`kernel (\S+) \(session (\S+)\) left running`)
	for i := range 3 {
		_, stderr, err := run(t, env, "kernel", "run", "--keep", "--addr", "tcp://"+a.rpcAddr, "--image", kerneltest.BusyboxImage,
			"--cpu", "1", "--mem", "64m", fmt.Sprintf("remembered=kernel-%d", i))
		m := started.FindStringSubmatch(stderr)
		if err != nil || m == nil {
			t.Fatalf("kernel run: %v\n%s\nagent log:\n%s", err, stderr, a.logs.String())
		}
		ids = append(ids, m[1])
		sessions[m[1]] = m[2]
	}
	before := a.kernels(t)
	if len(before) != 3 {
		t.Fatalf("%d kernels listed, want 3", len(before))
	}
	perKernel := a.allocated(t)
	for _, slot := range []string{"cpu", "mem"} {
		perKernel[slot] = perKernel[slot].Sub(idle[slot]).Div(decimal.NewFromInt(3))
	}
	if !perKernel["cpu"].Equal(decimal.NewFromInt(1)) || !perKernel["mem"].Equal(decimal.NewFromInt(64<<20)) {
		t.Fatalf("allocation a kernel %v, want cpu 1 and 64 MiB", perKernel)
	}

	// The crash, and a death nobody watches.
	a.kill()
	survivors, dead := []string{ids[0], ids[2]}, ids[1]
	deadInfo := before[dead]
	deadCID := deadInfo["container_id"].(string)
	if _, err := docker.ContainerKill(context.Background(), deadCID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}

	a.start(t)
	after := a.kernels(t)
	if len(after) != 2 {
		t.Errorf("after the restart %d kernels listed, want the 2 survivors: %v", len(after), slices.Sorted(maps.Keys(after)))
	}
	for i, id := range survivors {
		k, ok := after[id]
		if !ok {
			t.Fatalf("survivor %s not recovered; agent log:\n%s", id, a.logs.String())
		}
		if k["container_id"] != before[id]["container_id"] || k["state"] != "running" {
			t.Errorf("survivor %s: %v, was %v", id, k, before[id])
		}
		// The same runner and shell as before the crash: the variable the
		// first execute set is still there.
		want := fmt.Sprintf("kernel-%d\n", []int{0, 2}[i])
		if got := a.execute(t, sessions[id], id, "echo $remembered"); got != want {
			t.Errorf("survivor %s: execute printed %q, want %q", id, got, want)
		}
	}
	got := a.allocated(t)
	for _, slot := range []string{"cpu", "mem"} {
		if want := idle[slot].Add(perKernel[slot].Mul(decimal.NewFromInt(2))); !got[slot].Equal(want) {
			t.Errorf("%s allocated %s after recovery, want %s (the two survivors)", slot, got[slot], want)
		}
	}
	free := a.assignAll(t)
	var held []int
	for _, id := range survivors {
		held = append(held, hostPorts(before[id])...)
	}
	for _, p := range held {
		if slices.Contains(free, p) {
			t.Errorf("assign_port handed out port %d of a recovered kernel", p)
		}
	}
	for _, p := range hostPorts(deadInfo) {
		if !slices.Contains(free, p) {
			t.Errorf("port %d of the dead kernel is not free again (assign_port gave %v)", p, free)
		}
	}
	if len(free) != len(allPorts)-len(held) {
		t.Errorf("assign_port gave %d ports, want %d (all but the survivors' %d)", len(free), len(allPorts)-len(held), len(held))
	}
	if _, err := docker.ContainerInspect(context.Background(), deadCID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the dead kernel's container was not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.scratch, dead)); !os.IsNotExist(err) {
		t.Errorf("the dead kernel's scratch dir was not removed: %v", err)
	}
	var reported bool
	for _, ev := range a.events(t) {
		if ev.Name == "kernel_terminated" && ev.Body["kernel_id"] == dead {
			reported = true
			if ev.Body["reason"] != string(lifecycle.SelfTerminated) || ev.Body["exit_code"] != float64(137) {
				t.Errorf("kernel_terminated of the dead kernel: %v", ev.Body)
			}
		}
	}
	if !reported {
		t.Errorf("no kernel_terminated event for the dead kernel %s: %+v", dead, a.events(t))
	}
	a.wantOnly(t, docker, survivors)

	for _, id := range survivors {
		if _, stderr, err := run(t, env, "kernel", "destroy", "--addr", "tcp://"+a.rpcAddr, id); err != nil {
			t.Fatalf("kernel destroy %s: %v\n%s", id, err, stderr)
		}
	}
	if left := a.kernels(t); len(left) != 0 {
		t.Errorf("kernels left after destroying all: %v", left)
	}
	got = a.allocated(t)
	for _, slot := range []string{"cpu", "mem"} {
		if !got[slot].Equal(idle[slot]) {
			t.Errorf("%s allocated %s after destroying all, want %s", slot, got[slot], idle[slot])
		}
	}
	if free := a.assignAll(t); !slices.Equal(free, allPorts) {
		t.Errorf("assign_port gives %v after destroying all, want %v", free, allPorts)
	}
	a.wantOnly(t, docker, nil)
	a.stop(t)
	// No process of this tree outlived its agent: not the plugin of the
	// SIGKILLed one either.
	if procs := processesUnder(a.binDir); len(procs) > 0 {
		t.Errorf("processes left running from %s: %v", a.binDir, procs)
	}
}

// processesUnder lists the running processes whose executable is in dir.
func processesUnder(dir string) []string {
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	var out []string
	for _, exe := range exes {
		target, err := os.Readlink(exe)
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			out = append(out, filepath.Base(filepath.Dir(exe))+":"+target)
		}
	}
	return out
}

// wantOnly checks that exactly these kernels have a container and a
// scratch dir.
func (a *realAgent) wantOnly(t *testing.T, docker *client.Client, kernelIDs []string) {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), client.ContainerListOptions{
		All: true, Filters: client.Filters{}.Add("label", kernel.LabelAgentID+"="+a.agentID),
	})
	if err != nil {
		t.Fatal(err)
	}
	var containers []string
	for _, c := range list.Items {
		containers = append(containers, c.Labels[kernel.LabelKernelID])
	}
	var dirs []string
	for _, p := range kerneltest.ScratchEntries(t, a.scratch) {
		dirs = append(dirs, filepath.Base(p))
	}
	want := slices.Sorted(slices.Values(kernelIDs))
	slices.Sort(containers)
	slices.Sort(dirs)
	if !slices.Equal(containers, want) {
		t.Errorf("containers of this agent: %v, want %v", containers, want)
	}
	if !slices.Equal(dirs, want) {
		t.Errorf("scratch dirs: %v, want %v", dirs, want)
	}
}
