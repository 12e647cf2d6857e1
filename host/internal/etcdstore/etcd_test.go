package etcdstore

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdstore/etcdtest"
)

func TestRegistrationWritesUpstreamKeys(t *testing.T) {
	cases := []struct {
		description string
		address     NodeAddress
		want        map[string]string
	}{
		{
			description: "with a watcher port",
			address:     NodeAddress{IP: "10.0.0.5", WatcherPort: 6009},
			want: map[string]string{
				"/sorna/ns1/nodes/agents/i-node1/":             "running",
				"/sorna/ns1/nodes/agents/i-node1/ip":           "10.0.0.5",
				"/sorna/ns1/nodes/agents/i-node1/watcher_port": "6009",
			},
		},
		{
			description: "without a watcher port",
			address:     NodeAddress{IP: "10.0.0.5"},
			want: map[string]string{
				"/sorna/ns1/nodes/agents/i-node1/":   "running",
				"/sorna/ns1/nodes/agents/i-node1/ip": "10.0.0.5",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			e := startTestEtcd(t)
			c := connectTest(t, e.Endpoint(), "ns1", "i-node1")
			raw := rawClient(t, e.Endpoint())
			ctx := context.Background()

			if err := c.SetStatus(ctx, AgentStarting); err != nil {
				t.Fatal(err)
			}
			if got := rawDump(t, raw, "/sorna/"); !reflect.DeepEqual(got, map[string]string{"/sorna/ns1/nodes/agents/i-node1/": "starting"}) {
				t.Fatalf("after starting: %v", got)
			}
			if err := c.PublishNodeAddress(ctx, tc.address); err != nil {
				t.Fatal(err)
			}
			if err := c.SetStatus(ctx, AgentRunning); err != nil {
				t.Fatal(err)
			}
			if got := rawDump(t, raw, "/sorna/"); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("keys = %v\nwant %v", got, tc.want)
			}
			if err := c.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rawDump(t, raw, "/sorna/"); len(got) != 0 {
				t.Fatalf("after Deregister: %v", got)
			}
		})
	}
}

func TestNodeAddressFromConfig(t *testing.T) {
	cfg := &config.Config{}
	cfg.Agent.RPCListenAddr = config.HostPort{Host: "192.168.1.2", Port: 6001}
	cfg.Watcher.ServiceAddr = config.HostPort{Host: "0.0.0.0", Port: 6009}
	if got := NodeAddressFromConfig(cfg); got != (NodeAddress{IP: "192.168.1.2"}) {
		t.Errorf("unconfigured watcher: %+v", got)
	}
	cfg.Watcher.ServiceAddrConfigured = true
	if got := NodeAddressFromConfig(cfg); got != (NodeAddress{IP: "192.168.1.2", WatcherPort: 6009}) {
		t.Errorf("configured watcher: %+v", got)
	}
}

func TestScopePrecedence(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	raw := rawClient(t, e.Endpoint())
	rawPut(t, raw, map[string]string{
		"/sorna/ns/config/x":                      "global",
		"/sorna/ns/nodes/agents/i-a/config/x":     "node",
		"/sorna/ns/config/only-global":            "g",
		"/sorna/ns/config/t/a":                    "global-a",
		"/sorna/ns/config/t/b":                    "global-b",
		"/sorna/ns/nodes/agents/i-a/config/t/a":   "node-a",
		"/sorna/ns/config/u/a":                    "global-u",
		"/sorna/ns/nodes/agents/i-other/config/x": "other node",
		"/sorna/other/config/x":                   "other namespace",
	})
	ctx := context.Background()
	for _, tc := range []struct {
		description string
		scope       Scope
		key         string
		want        string
		found       bool
	}{
		{"merged prefers the node scope", ScopeMerged, "config/x", "node", true},
		{"node reads fall back to global like upstream", ScopeNode, "config/only-global", "g", true},
		{"global ignores the node scope", ScopeGlobal, "config/x", "global", true},
		{"missing everywhere", ScopeMerged, "config/missing", "", false},
	} {
		t.Run(tc.description, func(t *testing.T) {
			got, found, err := c.Get(ctx, tc.scope, tc.key)
			if err != nil || got != tc.want || found != tc.found {
				t.Errorf("Get = %q, %v, %v; want %q, %v", got, found, err, tc.want, tc.found)
			}
		})
	}
	t.Run("prefix reads shadow per top-level name like upstream's ChainMap", func(t *testing.T) {
		got, err := c.GetPrefix(ctx, ScopeMerged, "config")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"x":           "node",
			"only-global": "g",
			"t":           map[string]any{"a": "node-a"}, // global t/b is hidden
			"u":           map[string]any{"a": "global-u"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetPrefix = %#v\nwant %#v", got, want)
		}
	})
	t.Run("writes in the merged scope are refused", func(t *testing.T) {
		if err := c.Put(ctx, ScopeMerged, "k", "v"); !errors.Is(err, ErrMergedWrite) {
			t.Errorf("Put merged: %v", err)
		}
	})
}

func TestPutPrefixLayoutMatchesUpstream(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	raw := rawClient(t, e.Endpoint())
	ctx := context.Background()
	tree := map[string]any{"accelerator": map[string]any{"cuda": map[string]any{"a/b": "1", "": "self"}}}
	if err := c.PutPrefix(ctx, ScopeGlobal, "config/plugins", tree); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/sorna/ns/config/plugins/accelerator/cuda":       "self",
		"/sorna/ns/config/plugins/accelerator/cuda/a%2Fb": "1",
	}
	if got := rawDump(t, raw, "/sorna/"); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys = %v\nwant %v", got, want)
	}
	back, err := c.GetPrefix(ctx, ScopeGlobal, "config/plugins")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tree) {
		t.Errorf("read back %#v, want %#v", back, tree)
	}
}

func TestWaitForManagerUnblocksOnUp(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	raw := rawClient(t, e.Endpoint())
	rawPut(t, raw, map[string]string{"/sorna/ns/nodes/manager/i-mgr": "starting"})

	done := make(chan error, 1)
	go func() { done <- c.WaitForManager(context.Background(), 50*time.Millisecond) }()
	select {
	case err := <-done:
		t.Fatalf("returned before any manager was up: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Up in another namespace, or a non-"up" value, must not count.
	rawPut(t, raw, map[string]string{"/sorna/other/nodes/manager/i-mgr": "up", "/sorna/ns/nodes/manager/i-mgr": "down"})
	select {
	case err := <-done:
		t.Fatalf("returned on a foreign or non-up key: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	rawPut(t, raw, map[string]string{"/sorna/ns/nodes/manager/i-mgr": "up"})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not unblock after the manager came up")
	}
	// Already up: returns at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.WaitForManager(ctx, 0); err != nil {
		t.Fatalf("with a manager already up: %v", err)
	}
}

func TestWaitForManagerCancellation(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.WaitForManager(ctx, 0) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForManager ignored cancellation")
	}
}

func TestConnectFailsWithoutEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Connect(ctx, Options{Endpoints: []string{freeListenAddr(t).String()}, Namespace: "ns", AgentID: "i-a", DialTimeout: 500 * time.Millisecond, Log: testLogger(t)})
	if err == nil {
		t.Fatal("Connect succeeded with nothing listening")
	}
}

// One test against Debian's etcd binary, to be sure the layout is the
// server's and not an artifact of the embedded build.
func TestAgainstDebianEtcd(t *testing.T) {
	endpoint := etcdtest.Start(t)
	c := connectTest(t, endpoint, "ns", "i-a")
	raw := rawClient(t, endpoint)
	ctx := context.Background()
	if err := c.SetStatus(ctx, AgentStarting); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishNodeAddress(ctx, NodeAddress{IP: "10.1.1.1", WatcherPort: 6009}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetStatus(ctx, AgentRunning); err != nil {
		t.Fatal(err)
	}
	rawPut(t, raw, map[string]string{
		"/sorna/ns/config/redis/addr":                            "redis.local:6379",
		"/sorna/ns/nodes/agents/i-a/config/container/kernel-uid": "1000",
		"/sorna/ns/nodes/manager/i-m":                            "up",
	})
	want := map[string]string{
		"/sorna/ns/nodes/agents/i-a/":             "running",
		"/sorna/ns/nodes/agents/i-a/ip":           "10.1.1.1",
		"/sorna/ns/nodes/agents/i-a/watcher_port": "6009",
	}
	for k, v := range want {
		if got := rawDump(t, raw, k); got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitForManager(waitCtx, 0); err != nil {
		t.Fatal(err)
	}
	overlay, err := c.ReadOverlay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if overlay.Redis == nil || overlay.Redis.Addr.String() != "redis.local:6379" || overlay.KernelUID == nil || *overlay.KernelUID != 1000 {
		t.Errorf("overlay = %+v", overlay)
	}
}
