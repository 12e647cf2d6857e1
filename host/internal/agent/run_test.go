package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdstore/etcdtest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// runConfig is the dev config made hermetic: its own ports, directories
// and agent id, no plugins, no Redis; the etcd at etcdAddr is embedded
// in the agent when embedded is set.
func runConfig(t *testing.T, etcdAddr config.HostPort, embedded bool) *config.Config {
	t.Helper()
	cfg := loadSample(t, "agent.dev.toml")
	dir := testutil.ShortTempDir(t)
	cfg.Agent.ID = "i-run-" + filepath.Base(dir)
	cfg.Etcd.Embedded, cfg.Etcd.Addrs, cfg.Etcd.DataDir = embedded, []config.HostPort{etcdAddr}, filepath.Join(dir, "etcd")
	if embedded {
		cfg.Etcd.EmbeddedExecutable = testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-etcd", dir, "baiagent-etcd")
	}
	cfg.Agent.RPCListenAddr = config.HostPort{Host: "127.0.0.1", Port: testutil.FreePort(t, "127.0.0.1")}
	cfg.Agent.InternalAddr = config.HostPort{Host: "127.0.0.1", Port: testutil.FreePort(t, "127.0.0.1")}
	cfg.Agent.VarBasePath, cfg.Agent.IPCBasePath = filepath.Join(dir, "lib"), filepath.Join(dir, "ipc")
	cfg.Agent.PluginRuntimeDir, cfg.Agent.PluginDirs = filepath.Join(dir, "plugins-run"), []string{filepath.Join(dir, "plugins")}
	cfg.Container.ScratchRoot = filepath.Join(dir, "scratches")
	for _, d := range []string{cfg.Agent.VarBasePath, cfg.Agent.IPCBasePath, cfg.Agent.PluginDirs[0], cfg.Container.ScratchRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// No kernel runs here; the manager only checks the runner exists.
	cfg.Agent.KernelRunnerPath = filepath.Join(dir, "baiagent-kernel-runner")
	if err := os.WriteFile(cfg.Agent.KernelRunnerPath, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRunJoinsEverythingItStarts runs the whole agent (embedded etcd,
// Docker, RPC, HTTP, admin socket, heartbeat) and stops it: once Run has
// returned, none of the goroutines it started is left.
func TestRunJoinsEverythingItStarts(t *testing.T) {
	kerneltest.Docker(t)
	cfg := runConfig(t, config.HostPort{Host: "127.0.0.1", Port: testutil.FreePort(t, "127.0.0.1")}, true)
	before := goleak.IgnoreCurrent()
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- New(cfg, zerolog.New(&logs)).Run(ctx) }()
	testutil.Eventually(t, 2*time.Minute, "the agent to start", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was stopped: %v\n%s", err, logs.String())
		default:
		}
		return strings.Contains(logs.String(), `"message":"agent started"`)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	noLoopLeft(t)
	goleak.VerifyNone(t, before)
}

// TestRunStopsStartedLoopsWhenALaterStepFails lets every part build and
// the first loops (kernel lifecycle, RPC server) start, then makes the
// etcd registration fail: the etcd user may write the agent's status key
// but not its ip key, as a real etcd with a narrower role would. Run must
// return that error with the loops it had started cancelled and joined.
func TestRunStopsStartedLoopsWhenALaterStepFails(t *testing.T) {
	kerneltest.Docker(t)
	// etcd's own binary: its bcrypt password checks are quick, unlike an
	// etcd inside this race-instrumented process.
	endpoint := etcdtest.Start(t)
	host, port, _ := net.SplitHostPort(endpoint)
	portNum, _ := strconv.Atoi(port)
	cfg := runConfig(t, config.HostPort{Host: host, Port: portNum}, false)
	cfg.Etcd.User, cfg.Etcd.Password = "agent", "agent-secret"
	statusKey := "/sorna/" + cfg.Etcd.Namespace + "/nodes/agents/" + cfg.Agent.ID + "/"
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), time.Minute)
	defer cancelSetup()
	restrictAgentUser(setupCtx, t, endpoint, statusKey)

	before := goleak.IgnoreCurrent()
	err := New(cfg, zerolog.Nop()).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "register in etcd") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Run = %v, want the registration's permission denied", err)
	}
	noLoopLeft(t)
	goleak.VerifyNone(t, before)
}

// restrictAgentUser turns on etcd authentication with a user "agent" that
// may read everything under /sorna/ and write only statusKey.
func restrictAgentUser(ctx context.Context, t *testing.T, endpoint, statusKey string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "agent"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "agent", "/sorna/", clientv3.GetPrefixRangeEnd("/sorna/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "agent", statusKey, "", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "agent", "agent-secret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "agent", "agent"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth setup step %d: %v", i, err)
		}
	}
}

// noLoopLeft checks, the moment Run has returned and without the retries
// goleak allows for goroutines that end on their own, that none of the
// loops start runs is still there: Run joined them, not only cancelled
// them.
func noLoopLeft(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "agent.(*Agent).start.func") {
			t.Errorf("a loop started by Run is still running after Run returned:\n%s", g)
		}
	}
}
