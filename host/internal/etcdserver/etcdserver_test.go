package etcdserver

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/features"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/zaplog"
)

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

func freeListenAddr(t *testing.T) config.HostPort {
	t.Helper()
	return config.HostPort{Host: "127.0.0.1", Port: testutil.FreePort(t, "127.0.0.1")}
}

// startTest runs a member for one test.
func startTest(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, filepath.Join(t.TempDir(), "etcd"), freeListenAddr(t), testLogger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// client is a plain etcd client of the member at endpoint.
func client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zaplog.New(testLogger(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func put(t *testing.T, c *clientv3.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	listen := freeListenAddr(t)
	ctx := context.Background()
	first, err := Start(ctx, dir, listen, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, first.Endpoint())
	put(t, c, "config/kept", "yes")
	_ = c.Close()
	first.Close()

	second, err := Start(ctx, dir, listen, testLogger(t))
	if err != nil {
		t.Fatalf("restart with the same data dir: %v", err)
	}
	defer second.Close()
	if got := get(t, client(t, second.Endpoint()), "config/kept"); got != "yes" {
		t.Fatalf("after restart: %q, want yes", got)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := config.HostPort{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}
	_, err = Start(context.Background(), filepath.Join(t.TempDir(), "etcd"), taken, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), taken.String()) {
		t.Fatalf("err = %v, want an 'already in use' error naming %s", err, taken)
	}
}

// The member runs with the settings that keep an idle agent quiet
// (applyIdleSettings), and they reach the running server: embed.StartEtcd
// copies embed.Config into config.ServerConfig (embed/etcd.go), which the
// loops read (etcd server v3.7.3: etcdserver/raft.go's ticker from TickMs,
// EtcdServer.adjustTicks and v3rpc's monitorLeader from ElectionTicks,
// storage/backend/backend.go's batch timer, EtcdServer.monitorDowngrade,
// which returns at once when DowngradeCheckTime is 0). Writes stay durable:
// fsync is on, and a write made before a restart is read after it
// (TestRestartKeepsData).
func TestIdleSettingsApplied(t *testing.T) {
	s := startTest(t)
	cfg := s.etcd.Server.Config()
	checks := []struct {
		name      string
		got, want any
	}{
		{"TickMs", cfg.TickMs, uint(150)},
		// 5 ticks, the fewest etcd accepts: a lone member's start-up election
		// waits 1 to 5 ticks.
		{"ElectionTicks", cfg.ElectionTicks, 5},
		{"BackendBatchInterval", cfg.BackendBatchInterval, time.Second},
		{"DowngradeCheckTime", cfg.DowngradeCheckTime, time.Duration(0)},
		{"UnsafeNoFsync", cfg.UnsafeNoFsync, false},
		{"CorruptCheckTime", cfg.CorruptCheckTime, time.Duration(0)},
		{"CompactHashCheck", cfg.ServerFeatureGate.Enabled(features.CompactHashCheck), false},
		{"AutoCompactionRetention", cfg.AutoCompactionRetention, time.Duration(0)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// And the member serves.
	c := client(t, s.Endpoint())
	put(t, c, "config/idle", "quiet")
	if got := get(t, c, "config/idle"); got != "quiet" {
		t.Fatalf("read back %q, want quiet", got)
	}
}

// jsonLines parses the JSON log lines in out.
func jsonLines(out string) []map[string]any {
	var lines []map[string]any
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// A member that starts fresh, stops, starts again on its data and stops
// logs no error: operators read ERR as something to act on.
func TestLogsNoErrorsWhenHealthy(t *testing.T) {
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs).Level(zerolog.InfoLevel)
	dir := filepath.Join(t.TempDir(), "etcd")
	listen := freeListenAddr(t)
	ctx := context.Background()
	for round := range 2 {
		s, err := Start(ctx, dir, listen, log)
		if err != nil {
			t.Fatalf("start %d: %v", round+1, err)
		}
		c := client(t, s.Endpoint())
		put(t, c, "config/round", "x")
		_ = c.Close()
		s.Close()
	}
	lines := jsonLines(logs.String())
	if len(lines) == 0 {
		t.Fatal("no log lines captured")
	}
	for _, l := range lines {
		if l["level"] == "error" {
			t.Errorf("error logged by a healthy member: %v", l)
		}
	}
}
