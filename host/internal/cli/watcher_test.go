package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdserver"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/watcher"
)

// stubHost is the watcher's host in CLI tests: it records commands and
// runs none.
type stubHost struct {
	mu    sync.Mutex
	calls []string
}

func (s *stubHost) record(args ...string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, strings.Join(args, " "))
	return "active\n", nil
}

func (s *stubHost) Systemctl(_ context.Context, args ...string) (string, error) {
	return s.record(append([]string{"systemctl"}, args...)...)
}
func (s *stubHost) Mount(_ context.Context, t, o, src, dst string) (string, error) {
	return s.record("mount", t, o, src, dst)
}
func (s *stubHost) Unmount(_ context.Context, dst string) (string, error) {
	return s.record("umount", dst)
}
func (s *stubHost) Shutdown(context.Context) error { _, err := s.record("shutdown"); return err }
func (s *stubHost) ProcMounts() ([]byte, error) {
	return []byte("nas:/a /vol/a nfs rw 0 0\nnas:/b /mnt/b nfs rw 0 0\n"), nil
}
func (s *stubHost) ReadFile(path string) ([]byte, error)     { return os.ReadFile(path) }
func (s *stubHost) WriteFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
func (s *stubHost) Mkdir(string) (bool, error)               { return true, nil }
func (s *stubHost) Rmdir(string) error                       { return nil }

func (s *stubHost) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func useStubHost(t *testing.T) *stubHost {
	t.Helper()
	host := &stubHost{}
	prev := newWatcherSystem
	newWatcherSystem = func() watcher.System { return host }
	t.Cleanup(func() { newWatcherSystem = prev })
	return host
}

func watcherConfig(t *testing.T, etcdAddr, watcherPort, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.toml")
	text := fmt.Sprintf(`
[etcd]
namespace = "watcher-test"
addr = %q
[agent]
backend = "docker"
id = "i-watcher-test"
[container]
[resource]
[watcher]
service-addr = "127.0.0.1:%s"
target-service = "baiagent.service"
%s
`, etcdAddr, watcherPort, extra)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWatcher runs `baiagent watcher` until the test ends.
func startWatcher(t *testing.T, configPath string) (stderr *testutil.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	root := NewRootCommand(testEnv(t, nil))
	stderr = &testutil.SyncBuffer{}
	root.SetArgs([]string{"watcher", "-f", configPath})
	root.SetOut(io.Discard)
	root.SetErr(stderr)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watcher exited with %v\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("watcher did not stop\n%s", stderr.String())
		}
	})
	return stderr
}

// watcherGet polls until the watcher listens, then returns one answer.
func watcherGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	var (
		code int
		body string
		err  error
	)
	testutil.EventuallyOr(t, 20*time.Second, "the watcher to answer at "+url, func() bool {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set(watcher.TokenHeader, token)
		}
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		return true
	}, func() string { return err.Error() })
	return code, body
}

func TestWatcherCommandWithEmbeddedEtcd(t *testing.T) {
	host := useStubHost(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	etcdPort := testutil.FreePort(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := etcdserver.Start(ctx, filepath.Join(t.TempDir(), "etcd"), config.HostPort{Host: "127.0.0.1", Port: etcdPort}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	client, err := etcdstore.Connect(ctx, etcdstore.Options{Endpoints: []string{emb.Endpoint()}, Namespace: "watcher-test", AgentID: "i-watcher-test", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for key, value := range map[string]string{watcher.TokenKey: "from-etcd", watcher.MountPrefixKey: "/vol"} {
		if err := client.Put(ctx, etcdstore.ScopeGlobal, key, value); err != nil {
			t.Fatal(err)
		}
	}

	port := strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))
	startWatcher(t, watcherConfig(t, emb.Endpoint(), port, ""))
	base := "http://127.0.0.1:" + port
	cases := []struct {
		description string
		path, token string
		wantStatus  int
		wantBody    string
	}{
		{"no token", "/", "", 403, ""},
		{"the default token is not the etcd one", "/", "insecure", 403, ""},
		{"status with the etcd token", "/", "from-etcd", 200, `{"agent-status":"active","watcher-status":"active"}`},
		{"mounts under volumes/_mount from etcd", "/mounts", "from-etcd", 200, `["/vol/a"]`},
	}
	for _, tc := range cases {
		status, body := watcherGet(t, base+tc.path, tc.token)
		if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s: %d %q, want %d %q", tc.description, status, body, tc.wantStatus, tc.wantBody)
		}
	}
	if calls := host.snapshot(); len(calls) != 1 || calls[0] != "systemctl is-active baiagent.service" {
		t.Errorf("commands %q", calls)
	}
}

func TestWatcherCommandWithoutEtcdAnswers503(t *testing.T) {
	useStubHost(t)
	port := strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))
	stderr := startWatcher(t, watcherConfig(t, "127.0.0.1:"+strconv.Itoa(testutil.FreePort(t, "127.0.0.1")), port, ""))
	status, body := watcherGet(t, "http://127.0.0.1:"+port+"/", "insecure")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("%d %q, want 503\n%s", status, body, stderr.String())
	}
}

func TestWatcherCommandRefusesBadTLSSettings(t *testing.T) {
	useStubHost(t)
	cases := []struct {
		description string
		extra       string
		wantErr     string
	}{
		{"ssl without a certificate", "ssl-enabled = true", "watcher.ssl-cert is not set"},
	}
	for _, tc := range cases {
		path := watcherConfig(t, "127.0.0.1:"+strconv.Itoa(testutil.FreePort(t, "127.0.0.1")), strconv.Itoa(testutil.FreePort(t, "127.0.0.1")), tc.extra)
		_, _, err := run(t, testEnv(t, nil), "watcher", "-f", path)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.description, err, tc.wantErr)
		}
	}
}
