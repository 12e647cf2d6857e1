package pluginhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/proto/sdk"
)

// builtFake builds the fake plugin once per test binary.
var builtFake = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "bai-fake-build")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "fakeplugin")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/fakeplugin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fake plugin: %v\n%s", err, msg)
	}
	return out, nil
})

// installFake copies the fake plugin into dir under baiagent-plugin-<name>.
func installFake(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := builtFake()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ExecutablePrefix+name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func installScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, ExecutablePrefix+name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestHost(t *testing.T, pluginDir string, mutate func(*Options)) (*Host, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	opts := Options{
		Dirs:         []string{pluginDir},
		RuntimeDir:   testutil.ShortTempDir(t),
		StartTimeout: 20 * time.Second,
		CallTimeout:  5 * time.Second,
		MinBackoff:   50 * time.Millisecond,
		MaxBackoff:   500 * time.Millisecond,
		Logger:       zerolog.New(logs).Level(zerolog.DebugLevel),
	}
	if mutate != nil {
		mutate(&opts)
	}
	h := New(opts)
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(h.Stop)
	return h, logs
}

func statusOf(t *testing.T, h *Host, name string) Status {
	t.Helper()
	for _, s := range h.Statuses() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("plugin %q not discovered; statuses: %+v", name, h.Statuses())
	return Status{}
}

func TestHealthyPluginRunsAndForwardsLogs(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	installFake(t, dir, "fake")
	h, logs := newTestHost(t, dir, nil)

	s := statusOf(t, h, "fake")
	if s.State != StateRunning {
		t.Fatalf("state = %s (%s), want running", s.State, s.Reason)
	}
	if s.DeviceCount != 2 || len(s.Slots) != 1 || s.Slots[0].Name != "fake.device" || s.Slots[0].Capacity.String() != "2" {
		t.Fatalf("unexpected status %+v", s)
	}
	if s.APIVersion != sdk.APIVersion || s.Version != "0.0.1-test" || s.PID == 0 {
		t.Fatalf("unexpected status %+v", s)
	}
	p, _, ok := h.Plugin("fake")
	if !ok {
		t.Fatal("no client for a running plugin")
	}
	spec, err := p.PrepareContainer(context.Background(), sdk.PrepareRequest{})
	if err != nil || spec.Env == nil {
		t.Fatalf("prepare: %v %+v", err, spec)
	}
	testutil.Eventually(t, 30*time.Second, "the plugin's log line", func() bool { return strings.Contains(logs.String(), "fake plugin starting") })
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "fake plugin starting") {
			line = l
		}
	}
	if !strings.Contains(line, `"plugin":"fake"`) || !strings.Contains(line, `"level":"info"`) {
		t.Fatalf("plugin log line not forwarded with the plugin's name: %q\nall logs:\n%s", line, logs.String())
	}
}

func TestBrokenPluginsAreReportedWhileOthersRun(t *testing.T) {
	cases := []struct {
		description string
		install     func(t *testing.T, dir string)
		mutate      func(o *Options)
		plugin      string
		wantState   State
		wantReason  string
		// wantPrefix, when set, is how the reason must start.
		wantPrefix string
		// permanent: the host must not try again.
		permanent bool
	}{
		{
			description: "a binary that prints garbage instead of a handshake",
			install: func(t *testing.T, dir string) {
				installScript(t, dir, "garbage", "echo 'hello, I am not a plugin'; sleep 30")
			},
			plugin: "garbage", wantState: StateFailed, wantReason: "hello, I am not a plugin",
		},
		{
			description: "a binary that never completes its handshake",
			install: func(t *testing.T, dir string) {
				installScript(t, dir, "hang", "sleep 30")
			},
			mutate: func(o *Options) { o.StartTimeout = 3 * time.Second },
			plugin: "hang", wantState: StateFailed, wantReason: "no handshake within agent.plugin-start-timeout (3s)",
		},
		{
			description: "a binary that exits at once",
			install: func(t *testing.T, dir string) {
				installScript(t, dir, "exits", "echo 'no driver found' >&2; exit 3")
			},
			plugin: "exits", wantState: StateFailed, wantReason: "Failed to read any lines from plugin's stdout",
			wantPrefix: "plugin stderr: no driver found; start: ",
		},
		{
			// go-plugin's own stderr parser asserts these are strings and
			// would panic inside the agent (go-plugin log_entry.go).
			description: "a binary whose JSON log lines carry non-string @message, @level and @timestamp",
			install: func(t *testing.T, dir string) {
				installScript(t, dir, "oddlog", `echo '{"@message": 5, "@level": ["x"], "@timestamp": 7}' >&2; echo '{"@message": {"a": 1}}' >&2; exit 3`)
			},
			plugin: "oddlog", wantState: StateFailed, wantReason: "Failed to read any lines from plugin's stdout",
			wantPrefix: `plugin stderr: {"@message": 5, "@level": ["x"], "@timestamp": 7}`,
		},
		{
			description: "a binary that writes its cause to stderr and garbage to stdout",
			install: func(t *testing.T, dir string) {
				installScript(t, dir, "noisy", "echo 'libfoo.so: cannot open shared object file' >&2; echo 'usage: noisy'; sleep 30")
			},
			plugin: "noisy", wantState: StateFailed, wantReason: "Unrecognized remote plugin message: usage: noisy",
			wantPrefix: "plugin stderr: libfoo.so: cannot open shared object file; start: ",
		},
		{
			description: "a plugin built for another major version of the plugin API",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "apiv2") },
			plugin:      "apiv2", wantState: StateFailed, permanent: true,
			wantReason: "plugin speaks plugin API 2.x, this agent speaks 1.x",
		},
		{
			description: "a world-writable plugin file",
			install: func(t *testing.T, dir string) {
				p := installFake(t, dir, "writable")
				if err := os.Chmod(p, 0o777); err != nil {
					t.Fatal(err)
				}
			},
			plugin: "writable", wantState: StateFailed, wantReason: "world-writable",
		},
		{
			description: "a plugin whose checksum does not match the configured one",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "tampered") },
			mutate: func(o *Options) {
				o.Checksums = map[string]string{"tampered": "sha256:" + strings.Repeat("ab", 32)}
			},
			plugin: "tampered", wantState: StateFailed, wantReason: "checksum",
		},
		{
			description: "a plugin claiming the kind of another plugin",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "dupcpu"); installFake(t, dir, "cpu") },
			plugin:      "dupcpu", wantState: StateFailed, wantReason: `resource kind "cpu" is already provided by plugin "cpu"`,
		},
		{
			description: "a plugin describing an unprefixed slot",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "unprefixed") },
			plugin:      "unprefixed", wantState: StateFailed, wantReason: `slot "device" is not prefixed with "unprefixed."`,
		},
		{
			description: "a plugin that rejects its configuration",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "badconfig") },
			plugin:      "badconfig", wantState: StateFailed, wantReason: "[plugins.badconfig] invalid plugin configuration: mode: must be one of a, b",
		},
		{
			description: "a plugin speaking only an API version the agent does not",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "oldapi") },
			plugin:      "oldapi", wantState: StateFailed, wantReason: "no common plugin API version", permanent: true,
		},
		{
			description: "a blocked plugin is not started",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "blockme") },
			mutate:      func(o *Options) { o.Policy = Policy{Block: []string{"blockme"}} },
			plugin:      "blockme", wantState: StateBlocked, wantReason: `"blockme"`,
		},
		{
			description: "a plugin missing from allow-compute-plugins is not started",
			install:     func(t *testing.T, dir string) { installFake(t, dir, "extra") },
			mutate:      func(o *Options) { o.Policy = Policy{Allow: []string{"fake"}} },
			plugin:      "extra", wantState: StateNotAllowed, wantReason: "allow-compute-plugins",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			t.Parallel()
			dir := testutil.ShortTempDir(t)
			installFake(t, dir, "fake")
			tc.install(t, dir)
			h, _ := newTestHost(t, dir, tc.mutate)
			s := statusOf(t, h, tc.plugin)
			if s.State != tc.wantState || !strings.Contains(s.Reason, tc.wantReason) {
				t.Fatalf("%s: state %q reason %q; want %q containing %q", tc.plugin, s.State, s.Reason, tc.wantState, tc.wantReason)
			}
			if !strings.HasPrefix(s.Reason, tc.wantPrefix) {
				t.Fatalf("%s: reason %q does not start with %q", tc.plugin, s.Reason, tc.wantPrefix)
			}
			if tc.wantState != StateFailed && s.PID != 0 {
				t.Fatalf("%s was started (pid %d)", tc.plugin, s.PID)
			}
			if tc.permanent {
				// Several backoffs (at most 500 ms here) pass: no retry.
				time.Sleep(1500 * time.Millisecond)
				if again := statusOf(t, h, tc.plugin); again.State != StateFailed || again.Restarts != 0 {
					t.Fatalf("%s was retried: %+v", tc.plugin, again)
				}
			}
			if good := statusOf(t, h, "fake"); good.State != StateRunning {
				t.Fatalf("healthy plugin is %s (%s)", good.State, good.Reason)
			}
		})
	}
}

func TestKilledPluginIsRestartedWithSameDevices(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	installFake(t, dir, "fake")
	h, _ := newTestHost(t, dir, nil)
	before := statusOf(t, h, "fake")
	devsBefore, _ := h.Devices("fake")
	if before.State != StateRunning {
		t.Fatalf("state %s", before.State)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var after Status
	testutil.Eventually(t, 30*time.Second, "the plugin to run again after SIGKILL", func() bool {
		after = statusOf(t, h, "fake")
		return after.State == StateRunning && after.PID != before.PID
	})
	if after.State != StateRunning || after.PID == before.PID || after.Restarts < 1 {
		t.Fatalf("plugin not back after SIGKILL: %+v", after)
	}
	devsAfter, _ := h.Devices("fake")
	if fmt.Sprint(devsBefore) != fmt.Sprint(devsAfter) {
		t.Fatalf("devices changed across restart:\nbefore %v\nafter  %v", devsBefore, devsAfter)
	}
	p, _, ok := h.Plugin("fake")
	if !ok {
		t.Fatal("no client after restart")
	}
	if _, err := p.ListDevices(context.Background()); err != nil {
		t.Fatalf("call after restart: %v", err)
	}
}

func TestStalePluginFromKilledAgentIsStopped(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	path := installFake(t, dir, "fake")
	runtimeDir := testutil.ShortTempDir(t)

	// A plugin process that an earlier agent started and left behind.
	hs := sdk.Handshake()
	stale := exec.Command(path)
	stale.Env = []string{hs.MagicCookieKey + "=" + hs.MagicCookieValue, "PLUGIN_PROTOCOL_VERSIONS=1", "TMPDIR=" + runtimeDir}
	if err := stale.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- stale.Wait() }()
	t.Cleanup(func() { _ = stale.Process.Kill() })
	time.Sleep(200 * time.Millisecond)
	if err := writePidRecord(runtimeDir, "fake", stale.Process.Pid); err != nil {
		t.Fatal(err)
	}

	newTestHost(t, dir, func(o *Options) { o.RuntimeDir = runtimeDir })
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
		t.Fatal("stale plugin process still running after the agent started")
	}
}

func TestStaleRecordOfReusedPIDDoesNotKill(t *testing.T) {
	runtimeDir := testutil.ShortTempDir(t)
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Process.Kill(); _ = victim.Wait() })
	// A record whose start time does not match: the PID was reused.
	rec := fmt.Sprintf("%d\n1\n/usr/bin/sleep\n", victim.Process.Pid)
	if err := os.WriteFile(pidFilePath(runtimeDir, "fake"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	found, err := cleanupStale(runtimeDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Killed || found[0].Reason != "pid reused by another process" {
		t.Fatalf("unexpected cleanup result %+v", found)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("unrelated process was killed: %v", err)
	}
}

// TestPluginsDieWithAgent runs a host in a child process, SIGKILLs that
// process and checks that its plugin goes away too.
func TestPluginsDieWithAgent(t *testing.T) {
	if os.Getenv("BAI_TEST_AGENT_CHILD") != "" {
		runChildAgent(t)
		return
	}
	dir := testutil.ShortTempDir(t)
	installFake(t, dir, "fake")
	runtimeDir := testutil.ShortTempDir(t)
	child := exec.Command(os.Args[0], "-test.run=^TestPluginsDieWithAgent$")
	child.Env = append(os.Environ(), "BAI_TEST_AGENT_CHILD=1", "BAI_TEST_PLUGIN_DIR="+dir, "BAI_TEST_RUNTIME_DIR="+runtimeDir)
	out := &testutil.SyncBuffer{}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		rec pidRecord
		err error
	)
	testutil.EventuallyOr(t, 10*time.Second, "the child agent to start its plugin", func() bool {
		rec, err = readPidRecord(pidFilePath(runtimeDir, "fake"))
		return err == nil
	}, func() string {
		_ = child.Process.Kill()
		return fmt.Sprintf("%v\n%s", err, out.String())
	})
	_ = child.Process.Kill()
	_ = child.Wait()
	testutil.EventuallyOr(t, 5*time.Second, fmt.Sprintf("plugin pid %d to end with its agent", rec.PID), func() bool {
		if err := syscall.Kill(rec.PID, 0); err != nil {
			return true
		}
		if st, err := processStartTime(rec.PID); err != nil || st != rec.StartTime {
			return true
		}
		// A zombie waits for its new parent to reap it.
		state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", rec.PID))
		return strings.Contains(string(state), ") Z ")
	}, func() string {
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
		return "it outlived its agent"
	})
}

func runChildAgent(t *testing.T) {
	h := New(Options{
		Dirs:       []string{os.Getenv("BAI_TEST_PLUGIN_DIR")},
		RuntimeDir: os.Getenv("BAI_TEST_RUNTIME_DIR"),
		Logger:     zerolog.New(os.Stderr),
	})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
}

// TestUnhealthyPluginsAreRestartedWithTheirCause: a plugin that crashes
// after start, and one that answers but says NOT_SERVING, are restarted,
// and the agent's log says why at warn: the exit and the plugin's last
// stderr lines, or the health answer.
func TestUnhealthyPluginsAreRestartedWithTheirCause(t *testing.T) {
	cases := []struct {
		description string
		plugin      string
		wantLog     []string
	}{
		{
			description: "a plugin that panics after start",
			plugin:      "crash",
			wantLog:     []string{`"exit":"exit status 2"`, "panic: fake plugin exploded: GPU fell off the bus", "goroutine"},
		},
		{
			description: "a plugin answering NOT_SERVING on grpc.health.v1",
			plugin:      "notserving",
			wantLog:     []string{"plugin reports NOT_SERVING on grpc.health.v1", "killed after failing 2 health checks"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			t.Parallel()
			dir := testutil.ShortTempDir(t)
			installFake(t, dir, tc.plugin)
			h, logs := newTestHost(t, dir, func(o *Options) { o.HealthInterval = 200 * time.Millisecond })
			var warn string
			testutil.EventuallyOr(t, 10*time.Second, "a line about the restart", func() bool {
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, "plugin exited; restarting") {
						warn = l
					}
				}
				return warn != ""
			}, func() string { return "logs:\n" + logs.String() })
			if !strings.Contains(warn, `"level":"warn"`) {
				t.Fatalf("no warn line about the restart; logs:\n%s", logs.String())
			}
			for _, want := range tc.wantLog {
				if !strings.Contains(warn, want) {
					t.Fatalf("restart line lacks %q: %s", want, warn)
				}
			}
			testutil.EventuallyOr(t, 10*time.Second, "a restart", func() bool {
				return statusOf(t, h, tc.plugin).Restarts >= 1
			}, func() string { return fmt.Sprintf("not restarted: %+v", statusOf(t, h, tc.plugin)) })
		})
	}
}
