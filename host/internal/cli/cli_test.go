package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch/scratchtest"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// repoRoot is the checkout's root, two levels above host/internal/cli.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// devTree lays out a copy of configs/agent.dev.toml with freshly built
// plugins under ../bin/plugins, as scripts/build.sh does.
func devTree(t *testing.T, ipcBasePath string) (configPath string) {
	t.Helper()
	root := testutil.ShortTempDir(t)
	configs := filepath.Join(root, "configs")
	plugins := filepath.Join(root, "bin", "plugins")
	for _, dir := range []string{configs, plugins} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "agent.dev.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the admin socket private to the test.
	data = bytes.Replace(data, []byte("[agent]\n"), []byte("[agent]\nipc-base-path = \""+ipcBasePath+"\"\nkernel-runner-path = \"../bin/baiagent-kernel-runner\"\n"), 1)
	// Private ports, so a dev agent running on this machine does not clash.
	data = bytes.Replace(data, []byte(`internal-addr = "127.0.0.1:6003"`), []byte(`internal-addr = "127.0.0.1:`+strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))+`"`), 1)
	data = bytes.Replace(data, []byte(`addr = "127.0.0.1:2379"`), []byte(`addr = "127.0.0.1:`+strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))+`"`), 1)
	// The test binary runs the agent, so its embedded etcd is not beside it.
	data = bytes.Replace(data, []byte("embedded = true"), []byte("embedded = true\nembedded-executable = \"../bin/baiagent-etcd\""), 1)
	data = bytes.Replace(data, []byte("ipc-base-path = \"../var/ipc\""), nil, 1)
	configPath = filepath.Join(configs, "agent.dev.toml")
	if err := os.WriteFile(configPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cpu/cmd/baiagent-plugin-cpu", plugins, "baiagent-plugin-cpu")
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cuda/cmd/baiagent-plugin-cuda", plugins, "baiagent-plugin-cuda")
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-kernel-runner", filepath.Join(root, "bin"), "baiagent-kernel-runner")
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-etcd", filepath.Join(root, "bin"), "baiagent-etcd")
	// The dev config's fake GPUs live beside it.
	if err := os.CopyFS(filepath.Join(configs, "fixtures"), os.DirFS(filepath.Join(repoRoot(t), "configs", "fixtures"))); err != nil {
		t.Fatal(err)
	}
	return configPath
}

// testEnv is a hermetic process description: no BACKEND_* variables, a
// short ipc base path.
func testEnv(t *testing.T, vars map[string]string) config.Env {
	t.Helper()
	env := config.SystemEnv()
	env.Lookup = func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	env.WorkDir = t.TempDir()
	env.HomeDir = t.TempDir()
	env.SystemConfigDir = t.TempDir()
	return env
}

func run(t *testing.T, env config.Env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := NewRootCommand(env)
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestPluginsListOnDevConfigShowsCPUPluginWithSlots(t *testing.T) {
	ipc := testutil.ShortTempDir(t)
	cfg := devTree(t, ipc)
	env := testEnv(t, nil)

	stdout, stderr, err := run(t, env, "plugins", "list", "-f", cfg)
	if err != nil {
		t.Fatalf("plugins list: %v\n%s", err, stderr)
	}
	var cpuLine string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "cpu ") {
			cpuLine = l
		}
	}
	for _, want := range []string{"cpu,mem", "running", "cpu=", "mem="} {
		if !strings.Contains(cpuLine, want) {
			t.Fatalf("cpu row %q lacks %q; output:\n%s\n%s", cpuLine, want, stdout, stderr)
		}
	}

	stdout, stderr, err = run(t, env, "plugins", "list", "--json", "-f", cfg)
	if err != nil {
		t.Fatalf("plugins list --json: %v\n%s", err, stderr)
	}
	var statuses []pluginhost.Status
	if err := json.Unmarshal([]byte(stdout), &statuses); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var cpu *pluginhost.Status
	for i := range statuses {
		if statuses[i].Name == "cpu" {
			cpu = &statuses[i]
		}
	}
	if cpu == nil || cpu.State != pluginhost.StateRunning || cpu.DeviceCount < 2 || len(cpu.Slots) != 2 {
		t.Fatalf("unexpected cpu status %+v", cpu)
	}
	if cpu.Slots[0].Name != "cpu" || !cpu.Slots[0].Capacity.IsPositive() || cpu.Slots[1].Name != "mem" || !cpu.Slots[1].Capacity.IsPositive() {
		t.Fatalf("unexpected cpu slots %+v", cpu.Slots)
	}

	var cuda *pluginhost.Status
	for i := range statuses {
		if statuses[i].Name == "cuda" {
			cuda = &statuses[i]
		}
	}
	if cuda == nil || cuda.State != pluginhost.StateRunning || cuda.DeviceCount != 2 || cuda.Slots[0].Name != "cuda.device" || cuda.Slots[0].Capacity.String() != "2" {
		t.Fatalf("fake GPUs of the dev config not listed: %+v", cuda)
	}

	stdout, _, err = run(t, env, "plugins", "inspect", "--json", "cuda", "-f", cfg)
	var detail adminapi.PluginDetail
	if err != nil || json.Unmarshal([]byte(stdout), &detail) != nil || len(detail.Devices) != 2 || detail.Devices[1].NUMANode != 1 || detail.Devices[0].Model == "" {
		t.Fatalf("inspect cuda: %v\n%s", err, stdout)
	}

	stdout, _, err = run(t, env, "plugins", "inspect", "cpu", "-f", cfg)
	if err != nil || !strings.Contains(stdout, "Devices:") || !strings.Contains(stdout, "root") {
		t.Fatalf("inspect: %v\n%s", err, stdout)
	}
	if _, _, err := run(t, env, "plugins", "inspect", "nosuch", "-f", cfg); err == nil || !strings.Contains(err.Error(), `no plugin named "nosuch"`) {
		t.Fatalf("inspect of a missing plugin: %v", err)
	}

	// Upstream's intrinsic plugin multiplies its cores by
	// BACKEND_CPU_OVERCOMMIT_FACTOR (agent/docker/intrinsic.py).
	stdout, stderr, err = run(t, testEnv(t, map[string]string{"BACKEND_CPU_OVERCOMMIT_FACTOR": "4"}), "plugins", "list", "--json", "-f", cfg)
	if err != nil {
		t.Fatalf("plugins list with BACKEND_CPU_OVERCOMMIT_FACTOR=4: %v\n%s", err, stderr)
	}
	var overcommitted []pluginhost.Status
	if err := json.Unmarshal([]byte(stdout), &overcommitted); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	for _, st := range overcommitted {
		if st.Name == "cpu" {
			if want := cpu.Slots[0].Capacity.Mul(decimal.NewFromInt(4)); len(st.Slots) != 2 || !st.Slots[0].Capacity.Equal(want) {
				t.Errorf("cpu slots with BACKEND_CPU_OVERCOMMIT_FACTOR=4: %+v, want cpu %s", st.Slots, want)
			}
		}
	}
}

// TestRunningAgent starts `baiagent server` on the dev config and drives it
// as an operator and as the manager would: plugins list from the live agent,
// gather_hwinfo over RPC, /readyz and /metrics, a kernel on a fake GPU.
func TestRunningAgent(t *testing.T) {
	ipc := testutil.ShortTempDir(t)
	cfg := devTree(t, ipc)
	env := testEnv(t, map[string]string{"BACKEND_AGENT_PORT": "16001"})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &testutil.SyncBuffer{}
	go func() {
		root := NewRootCommand(env)
		root.SetArgs([]string{"server", "-f", cfg})
		root.SetOut(logs)
		root.SetErr(logs)
		done <- root.ExecuteContext(ctx)
	}()
	sock := filepath.Join(ipc, "baiagent-admin.sock")
	testutil.EventuallyOr(t, 30*time.Second, "the agent's admin socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	}, func() string {
		cancel()
		return "logs:\n" + logs.String()
	})
	stdout, stderr, err := run(t, env, "plugins", "list", "-f", cfg)
	if err != nil {
		t.Fatalf("plugins list: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "no running agent") || !strings.Contains(stdout, "running") {
		t.Fatalf("list did not come from the running agent:\nstdout %s\nstderr %s", stdout, stderr)
	}
	// The manager's view: RPC on the configured port answers, and
	// gather_hwinfo reports the plugins' health.
	stdout, stderr, err = run(t, env, "rpc", "call", "gather_hwinfo", "--addr", "tcp://127.0.0.1:16001")
	if err != nil || !strings.Contains(stdout, `"cpu"`) || !strings.Contains(stdout, `"cuda"`) || !strings.Contains(stdout, "healthy") {
		t.Fatalf("gather_hwinfo: %v\n%s\n%s", err, stdout, stderr)
	}

	// The internal HTTP endpoint says the agent is ready.
	internal := regexp.MustCompile(`internal-addr = "([^"]+)"`).FindSubmatch(mustRead(t, cfg))
	resp, err := http.Get("http://" + string(internal[1]) + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", err, resp)
	}
	resp.Body.Close()
	// /metrics counted the RPC call above.
	resp, err = http.Get("http://" + string(internal[1]) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `method="gather_hwinfo"`) {
		t.Fatalf("/metrics lacks the gather_hwinfo call:\n%s", body)
	}

	// A kernel on one of the fake GPUs, through create_kernels / execute /
	// destroy_kernel, as `baiagent kernel run` sends them.
	kerneltest.BuildBusybox(t, kerneltest.Docker(t))
	stdout, stderr, err = run(t, env, "kernel", "run", "--addr", "tcp://127.0.0.1:16001", "--image", kerneltest.BusyboxImage,
		"--cpu", "1", "--mem", "128m", "--cuda", "1", "echo gpus=$CUDA_VISIBLE_DEVICES; echo hello from a kernel")
	if err != nil || !strings.Contains(stdout, "gpus=0") || !strings.Contains(stdout, "hello from a kernel") {
		t.Fatalf("kernel run: %v\nstdout %s\nstderr %s", err, stdout, stderr)
	}

	// Without Redis the events are readable on the internal endpoint: the
	// kernel's whole lifecycle is there, in order.
	resp, err = http.Get("http://" + string(internal[1]) + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var evs struct {
		Events []struct {
			Name string `json:"name"`
		} `json:"events"`
	}
	err = json.NewDecoder(resp.Body).Decode(&evs)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var lifecycle []string
	for _, ev := range evs.Events {
		if strings.HasPrefix(ev.Name, "kernel_") {
			lifecycle = append(lifecycle, ev.Name)
		}
	}
	if want := []string{"kernel_preparing", "kernel_creating", "kernel_started", "kernel_terminated"}; !slices.Equal(lifecycle, want) {
		t.Fatalf("kernel events %v, want %v", lifecycle, want)
	}

	admin, err := adminapi.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	res, err := admin.Resources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reported["cpu"].IsPositive() || !res.Reported["mem"].IsPositive() || len(res.Usage) < 2 {
		t.Fatalf("unexpected resources %+v", res)
	}
	for _, u := range res.Usage {
		if !u.Allocated.IsZero() {
			t.Fatalf("slot %s still has %s allocated after the kernel ended", u.Slot, u.Allocated)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop after its context ended")
	}
	if !strings.Contains(logs.String(), "agent started") {
		t.Fatalf("server logs lack the start line:\n%s", logs.String())
	}
}

func TestConfigCheck(t *testing.T) {
	cases := []struct {
		description string
		file        string
		vars        map[string]string
		wantErr     string
		wantOut     string
		wantStderr  string
	}{
		{
			description: "/dev/zero is refused at once, not read",
			file:        "/dev/zero",
			wantErr:     "not a regular file",
		},
		{
			description: "1 MiB of distinct keys is refused at once, not parsed for 20 s",
			file:        manyKeys(1 << 20),
			wantErr:     "more than the 2048",
		},
		{
			description: "a misspelt section is pointed at although validation fails",
			file:        "[etcd]\n[agnet]\nbackend = \"docker\"\n[container]\n[resource]\n",
			wantErr:     "required section [agent] is missing",
			wantStderr:  "warning: agnet: unknown key",
		},
		{
			description: "the dev config is valid and printed with defaults",
			file:        "DEV",
			wantOut:     "reserved-mem",
		},
		{
			description: "a bad value is named by its key",
			file:        "[etcd]\n[agent]\n[container]\n[resource]\nreserved-mem = \"1Q\"\n",
			wantErr:     "resource.reserved-mem",
		},
		{
			description: "a bad env override names the variable",
			file:        "DEV",
			vars:        map[string]string{"BACKEND_AGENT_PORT": "seventy"},
			wantErr:     "BACKEND_AGENT_PORT",
		},
		{
			description: "an env override shows in the effective config",
			file:        "DEV",
			vars:        map[string]string{"BACKEND_AGENT_PORT": "7001"},
			wantOut:     "7001",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			path := filepath.Join(repoRoot(t), "configs", "agent.dev.toml")
			if strings.HasPrefix(tc.file, "/") {
				path = tc.file
			} else if tc.file != "DEV" {
				path = filepath.Join(t.TempDir(), "agent.toml")
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			stdout, stderr, err := run(t, testEnv(t, tc.vars), "config", "check", "-f", path)
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("config check took %v", elapsed)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, stderr)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(stdout, tc.wantOut) {
				t.Fatalf("err %v; output lacks %q:\n%s", err, tc.wantOut, stdout)
			}
		})
	}
}

// manyKeys is an agent.toml of distinct keys just under size bytes.
func manyKeys(size int) string {
	var b strings.Builder
	b.WriteString("[etcd]\n[agent]\nbackend = \"docker\"\n[container]\n[resource]\n[plugins.many]\n")
	for i := 0; b.Len() < size-32; i++ {
		b.WriteString("key" + strconv.Itoa(i) + " = 1\n")
	}
	return b.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestConfigCheckTellsScratchSizeLimit: config check says what scratch-size
// will do on the configured scratch root (README's configuration table).
func TestConfigCheckTellsScratchSizeLimit(t *testing.T) {
	check := func(t *testing.T, container string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "agent.toml")
		file := "[etcd]\n[agent]\nbackend = \"docker\"\n[container]\n" + container + "\n[resource]\n"
		if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := run(t, testEnv(t, nil), "config", "check", "-f", path)
		if err != nil {
			t.Fatalf("config check: %v\n%s", err, stderr)
		}
		return stdout
	}
	t.Run("hostdir on a filesystem without project quotas", func(t *testing.T) {
		mnt := scratchtest.LoopFS(t, 32<<20, []string{"mkfs.ext4", "-q"}, "ext4", "")
		out := check(t, "scratch-root = \""+mnt+"/scratches\"\nscratch-size = \"1G\"")
		want := "# container.scratch-size: the ext4 filesystem at " + mnt + " cannot enforce scratch-size"
		if !strings.Contains(out, want) || !strings.Contains(out, "only advertised in resource.txt") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})
	t.Run("memory", func(t *testing.T) {
		out := check(t, "scratch-type = \"memory\"\nscratch-size = \"1G\"")
		if !strings.Contains(out, "# container.scratch-size: memory scratch dirs are 64 MiB tmpfs mounts") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("no size", func(t *testing.T) {
		if out := check(t, ""); strings.Contains(out, "# container.scratch-size") {
			t.Errorf("a note without a scratch-size:\n%s", out)
		}
	})
}
