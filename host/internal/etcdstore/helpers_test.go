package etcdstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdserver"
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

// startTestEtcd runs an in-process etcd member for one test.
func startTestEtcd(t *testing.T) *etcdserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := etcdserver.Start(ctx, filepath.Join(t.TempDir(), "etcd"), freeListenAddr(t), testLogger(t))
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func connectTest(t *testing.T, endpoint, namespace, agentID string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, Options{Endpoints: []string{endpoint}, Namespace: namespace, AgentID: agentID, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawClient reads and writes exact keys, as a manager or etcdctl would.
func rawClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zaplog.New(testLogger(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw
}

func rawPut(t *testing.T, raw *clientv3.Client, kvs map[string]string) {
	t.Helper()
	for k, v := range kvs {
		if _, err := raw.Put(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
}

// rawDump returns every key under prefix with its value.
func rawDump(t *testing.T, raw *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := raw.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}
