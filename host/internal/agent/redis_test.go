package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdserver"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// overlayFromEtcd writes config/redis keys into a real (embedded) etcd as
// a manager would, and reads them back the way the agent starts.
func overlayFromEtcd(t *testing.T, kvs map[string]string) *etcdstore.Overlay {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := testutil.FreePort(t, "127.0.0.1")
	emb, err := etcdserver.Start(ctx, filepath.Join(t.TempDir(), "etcd"), config.HostPort{Host: "127.0.0.1", Port: port}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	c, err := etcdstore.Connect(ctx, etcdstore.Options{Endpoints: []string{emb.Endpoint()}, Namespace: "ns", AgentID: "i-test", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for k, v := range kvs {
		if err := c.Put(ctx, etcdstore.ScopeGlobal, k, v); err != nil {
			t.Fatal(err)
		}
	}
	overlay, err := c.ReadOverlay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return overlay
}

// emitOne sends agent_started through a bus on the stream role's target.
func emitOne(t *testing.T, profile *redisconn.Profile) {
	t.Helper()
	stream := profile.For(redisconn.RoleStream)
	bus, err := events.New(context.Background(), events.Options{
		AgentID: "i-test", Redis: &stream, Encoding: events.EncodingArgs,
		QueueDir: t.TempDir(), Logger: zerolog.Nop(), SendTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if err := bus.Emit(context.Background(), events.AgentStarted{Reason: events.ReasonSelfStarted}); err != nil {
		t.Fatalf("emit: %v", err)
	}
}

func streamLen(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	n, err := c.XLen(context.Background(), events.StreamKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func exists(t *testing.T, c *redis.Client, key string) bool {
	t.Helper()
	n, err := c.Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestRedisRolesConnectWhereOverridesSay: with config/redis/addr on one
// server and override_configs/statistics on a second, password-protected
// one, events and images land on the first and statistics on the second
// (upstream agent/agent.py __ainit__: profile_target(RedisRole.*)).
func TestRedisRolesConnectWhereOverridesSay(t *testing.T) {
	first := redistest.Start(t, false)
	second := redistest.StartWith(t, redistest.Options{Password: "stats-secret"})
	overlay := overlayFromEtcd(t, map[string]string{
		"config/redis/addr":                                 first.Addr,
		"config/redis/override_configs/statistics/addr":     second.Addr,
		"config/redis/override_configs/statistics/password": "stats-secret",
	})

	a := New(&config.Config{}, zerolog.Nop())
	profile, err := a.redisProfile(overlay)
	if err != nil {
		t.Fatal(err)
	}
	emitOne(t, profile)
	if n := streamLen(t, first.Client(t, events.StreamDB)); n != 1 {
		t.Errorf("events on the first server: %d, want 1", n)
	}
	if n := streamLen(t, second.Client(t, events.StreamDB)); n != 0 {
		t.Errorf("events on the second server: %d, want 0", n)
	}

	ctx := context.Background()
	for _, tc := range []struct {
		role       redisconn.Role
		want, away *redistest.Server
	}{
		{redisconn.RoleStatistics, second, first},
		{redisconn.RoleImage, first, second},
	} {
		c := profile.Client(tc.role)
		if err := c.Set(ctx, "probe."+string(tc.role), "1", 0).Err(); err != nil {
			t.Fatalf("%s: %v", tc.role, err)
		}
		_ = c.Close()
		if !exists(t, tc.want.Client(t, tc.role.DB()), "probe."+string(tc.role)) {
			t.Errorf("%s: key not on %s DB %d", tc.role, tc.want.Addr, tc.role.DB())
		}
		if exists(t, tc.away.Client(t, tc.role.DB()), "probe."+string(tc.role)) {
			t.Errorf("%s: key also on %s", tc.role, tc.away.Addr)
		}
	}
}

// TestRedisThroughSentinel: config/redis/sentinel + service_name find the
// master through a real sentinel, whose password is the master's
// (upstream common/clients/valkey_client/client.py falls back to it).
func TestRedisThroughSentinel(t *testing.T) {
	master := redistest.StartWith(t, redistest.Options{Password: "m-secret"})
	sentinel := redistest.StartSentinel(t, master, "mymaster")
	overlay := overlayFromEtcd(t, map[string]string{
		"config/redis/sentinel":     sentinel.Addr,
		"config/redis/service_name": "mymaster",
		"config/redis/password":     "m-secret",
	})
	a := New(&config.Config{}, zerolog.Nop())
	profile, err := a.redisProfile(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if got := profile.For(redisconn.RoleStream).Sentinel; len(got) != 1 || got[0] != sentinel.Addr {
		t.Fatalf("stream target sentinels = %v", got)
	}
	emitOne(t, profile)
	if n := streamLen(t, master.Client(t, events.StreamDB)); n != 1 {
		t.Errorf("events on the master: %d, want 1", n)
	}
	stats := profile.Client(redisconn.RoleStatistics)
	defer stats.Close()
	if err := stats.Set(context.Background(), "probe", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if !exists(t, master.Client(t, events.StatisticsDB), "probe") {
		t.Error("statistics key not on the master")
	}
}

// TestRedisProfileChoiceAndErrors: etcd replaces [redis] only when it names
// a server, and a role the agent uses must have somewhere to connect.
func TestRedisProfileChoiceAndErrors(t *testing.T) {
	local := &config.RedisConfig{RedisTarget: config.RedisTarget{Addr: config.HostPort{Host: "local", Port: 6379}}}
	etcdAddr := &config.HostPort{Host: "etcd", Port: 6379}
	cases := []struct {
		description string
		local       *config.RedisConfig
		etcd        *etcdstore.RedisSettings
		wantStream  string
		wantErr     string
	}{
		{"neither: no Redis", nil, nil, "", ""},
		{"[redis] alone", local, nil, "redis://local:6379", ""},
		{"etcd addr replaces [redis]", local, &etcdstore.RedisSettings{Addr: etcdAddr}, "redis://etcd:6379", ""},
		{"etcd without a server keeps [redis]", local, &etcdstore.RedisSettings{Password: "x"}, "redis://local:6379", ""},
		{"etcd override of the stream", local, &etcdstore.RedisSettings{Addr: etcdAddr, Overrides: map[string]etcdstore.RedisSettings{
			"stream": {Addr: &config.HostPort{Host: "s", Port: 1}, UseTLS: true}}}, "rediss://s:1", ""},
		{"etcd override of a used role names no server", local, &etcdstore.RedisSettings{Addr: etcdAddr, Overrides: map[string]etcdstore.RedisSettings{
			"image": {Password: "x"}}}, "", "etcd config/redis/override_configs/image: names neither addr nor sentinel"},
		{"etcd override of an unused role names no server", local, &etcdstore.RedisSettings{Addr: etcdAddr, Overrides: map[string]etcdstore.RedisSettings{
			"rate_limit": {}}}, "redis://etcd:6379", ""},
		{"[redis] without addr, filled by etcd", &config.RedisConfig{RedisTarget: config.RedisTarget{Password: "p"}},
			&etcdstore.RedisSettings{Addr: etcdAddr}, "redis://etcd:6379", ""},
		{"[redis] without addr, and etcd names none", &config.RedisConfig{RedisTarget: config.RedisTarget{Password: "p"}}, nil,
			"", "no Redis address: etcd's config/redis names none, and agent.toml's [redis] has neither addr nor sentinel"},
		{"[redis] override names no server", &config.RedisConfig{RedisTarget: local.RedisTarget, Overrides: map[string]config.RedisTarget{"statistics": {}}},
			nil, "", "agent.toml [redis.override-configs.statistics]: names neither addr nor sentinel"},
	}
	for _, tc := range cases {
		a := New(&config.Config{Redis: tc.local}, zerolog.Nop())
		var overlay *etcdstore.Overlay
		if tc.etcd != nil {
			overlay = &etcdstore.Overlay{Redis: tc.etcd}
		}
		profile, err := a.redisProfile(overlay)
		switch {
		case tc.wantErr != "":
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%s: err = %v, want %q", tc.description, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.description, err)
		case tc.wantStream == "" && profile != nil:
			t.Errorf("%s: got a profile, want none", tc.description)
		case tc.wantStream != "" && (profile == nil || profile.For(redisconn.RoleStream).String() != tc.wantStream):
			t.Errorf("%s: stream target = %v, want %s", tc.description, profile, tc.wantStream)
		}
	}
}

// TestEventsDBsAreTheRoles: events' DB constants are redisconn's roles.
func TestEventsDBsAreTheRoles(t *testing.T) {
	if events.StatisticsDB != redisconn.RoleStatistics.DB() || events.ImageDB != redisconn.RoleImage.DB() || events.StreamDB != redisconn.RoleStream.DB() {
		t.Error("events' Redis DBs disagree with redisconn's roles")
	}
}
