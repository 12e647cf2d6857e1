package etcdproc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/zaplog"
)

// member builds baiagent-etcd once per test binary run (go build caches
// it after the first).
func member(t *testing.T) string {
	t.Helper()
	return testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-etcd", t.TempDir(), ExecutableName)
}

func testOptions(t *testing.T, exe string) (Options, *testutil.SyncBuffer) {
	logs := &testutil.SyncBuffer{}
	return Options{
		Executable: exe,
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Listen:     config.HostPort{Host: "127.0.0.1", Port: testutil.FreePort(t, "127.0.0.1")},
		Log:        zerolog.New(logs),
	}, logs
}

// client is a plain etcd client of endpoint, closed when the test ends.
func client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zaplog.New(zerolog.Nop(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func put(t *testing.T, endpoint, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := client(t, endpoint).Put(ctx, key, value); err != nil {
		t.Fatalf("put %s at %s: %v", key, endpoint, err)
	}
}

func get(t *testing.T, endpoint, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := client(t, endpoint).Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s at %s: %v", key, endpoint, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// alive says whether pid is a live process (not a zombie: a reaped child
// is gone, an unreaped one is a leak of its own).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		_ = conn.Close()
	}
	return err == nil
}

func TestServesAndStopsOnClose(t *testing.T) {
	opts, logs := testOptions(t, member(t))
	p, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	if p.Endpoint() != opts.Listen.String() {
		t.Errorf("Endpoint() = %q, want %q", p.Endpoint(), opts.Listen.String())
	}
	pid := p.PID()
	put(t, p.Endpoint(), "k", "v")
	if got := get(t, p.Endpoint(), "k"); got != "v" {
		t.Fatalf("read back %q, want v", got)
	}
	p.Close()
	if alive(pid) {
		t.Errorf("the member (pid %d) still runs after Close", pid)
	}
	if listening(opts.Listen.String()) {
		t.Errorf("%s still accepts connections after Close", opts.Listen)
	}
	// Its own log lines come through the agent's logger, tagged.
	if !strings.Contains(logs.String(), `"component":"embedded-etcd"`) || !strings.Contains(logs.String(), "embedded etcd ready") {
		t.Errorf("the member's log lines were not relayed:\n%s", logs)
	}
	p.Close() // a second Close is harmless
}

// A member that dies is started again on the same data and address.
func TestRestartsAfterACrash(t *testing.T) {
	opts, logs := testOptions(t, member(t))
	p, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	defer p.Close()
	put(t, p.Endpoint(), "kept", "yes")
	first := p.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyOr(t, 30*time.Second, "a new member", func() bool {
		pid := p.PID()
		return pid != 0 && pid != first && listening(p.Endpoint())
	}, logs.String)
	if got := get(t, p.Endpoint(), "kept"); got != "yes" {
		t.Fatalf("after the restart %q, want yes", got)
	}
	if !strings.Contains(logs.String(), "embedded etcd exited; restarting it") || !strings.Contains(logs.String(), "signal: killed") {
		t.Errorf("the crash is not logged with how the member ended:\n%s", logs)
	}
}

func TestStartFailsWithTheMembersReason(t *testing.T) {
	exe := member(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := config.HostPort{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}
	tests := []struct {
		description string
		edit        func(*Options)
		want        []string
	}{
		{"client address taken", func(o *Options) { o.Listen = taken }, []string{"exited before it served", "exit status 1", "already in use", taken.String()}},
		{"no executable", func(o *Options) { o.Executable = filepath.Join(t.TempDir(), "nothing") }, []string{"etcd.embedded-executable", "no such file"}},
		{"data dir that cannot be made", func(o *Options) { o.DataDir = "/proc/self/etcd" }, []string{"exited before it served", "create data dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			opts, logs := testOptions(t, exe)
			tt.edit(&opts)
			p, err := Start(context.Background(), opts)
			if err == nil {
				p.Close()
				t.Fatal("Start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q\n%s", err, w, logs)
				}
			}
		})
	}
}

// The member goes when the agent goes, even when the agent is killed and
// runs no shutdown: it stops once its stdin (the agent's end of a pipe)
// closes, so no etcd keeps the address and the data dir from the
// restarted agent. The "agent" here is this test binary, run again as
// TestHelperAgent.
func TestStopsWhenTheAgentIsKilled(t *testing.T) {
	exe := member(t)
	opts, _ := testOptions(t, exe)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgent$")
	cmd.Env = append(os.Environ(), "ETCDPROC_HELPER="+fmt.Sprintf(`{"exe":%q,"dir":%q,"listen":%q}`, exe, opts.DataDir, opts.Listen.String()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = zerolog.NewTestWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscanf(out, "member %d\n", &pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the helper agent did not start its member: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testutil.Eventually(t, 15*time.Second, "the member to stop after its agent was killed", func() bool {
		return !alive(pid) && !listening(opts.Listen.String())
	})
}

func TestHelperAgent(t *testing.T) {
	spec := os.Getenv("ETCDPROC_HELPER")
	if spec == "" {
		t.Skip("run by TestStopsWhenTheAgentIsKilled")
	}
	var s struct{ Exe, Dir, Listen string }
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatal(err)
	}
	listen, err := config.ParseHostPort(s.Listen)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Options{Executable: s.Exe, DataDir: s.Dir, Listen: listen, Log: zerolog.New(os.Stderr)})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("member %d\n", p.PID())
	time.Sleep(time.Minute) // until killed
}

func TestRelayLogs(t *testing.T) {
	tests := []struct {
		description string
		line        string
		wantLevel   string
		wantMsg     string
		wantLastErr string
	}{
		{"warning keeps its level and fields", `{"level":"warn","component":"embedded-etcd","time":"t","message":"slow fdatasync","took":"1.2s"}`, "warn", "slow fdatasync", "no error logged"},
		{"error is remembered with its error field", `{"level":"error","error":"bind: address already in use","message":"embedded etcd failed"}`, "error", "embedded etcd failed", "embedded etcd failed: bind: address already in use"},
		{"a line that is not JSON", `panic: runtime error`, "warn", "embedded etcd", "no error logged"},
		{"no level", `{"message":"hello"}`, "info", "hello", "no error logged"},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			var out strings.Builder
			c := &child{}
			c.relayLogs(strings.NewReader(tt.line+"\n"), zerolog.New(&out))
			var got map[string]any
			if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
				t.Fatalf("relayed %q: %v", out.String(), err)
			}
			if got["level"] != tt.wantLevel || got["message"] != tt.wantMsg {
				t.Errorf("relayed %v, want level %s message %q", got, tt.wantLevel, tt.wantMsg)
			}
			if got["component"] != nil || got["time"] != nil {
				t.Errorf("relayed the member's own component or time: %v", got)
			}
			if strings.Contains(tt.line, `"took"`) && got["took"] != "1.2s" {
				t.Errorf("dropped a field: %v", got)
			}
			if c.lastError() != tt.wantLastErr {
				t.Errorf("lastError() = %q, want %q", c.lastError(), tt.wantLastErr)
			}
		})
	}
}
