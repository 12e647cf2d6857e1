package redisconn

import (
	"context"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/redistest"
)

// TestTLS: use_tls speaks TLS to a real TLS-only redis-server; its
// self-signed certificate passes only with tls_skip_verify (upstream
// valkey_client/client.py: use_insecure_tls = tls_skip_verify).
func TestTLS(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{TLS: true, Password: "p"})
	cases := []struct {
		description string
		target      Target
		wantOK      bool
	}{
		{"TLS with skip-verify", Target{Addr: srv.Addr, Password: "p", UseTLS: true, TLSSkipVerify: true}, true},
		{"TLS verifying a self-signed certificate", Target{Addr: srv.Addr, Password: "p", UseTLS: true}, false},
		{"plain text to a TLS port", Target{Addr: srv.Addr, Password: "p", RequestTimeout: 300 * time.Millisecond}, false},
		{"TLS with the wrong password", Target{Addr: srv.Addr, Password: "q", UseTLS: true, TLSSkipVerify: true}, false},
	}
	for _, tc := range cases {
		c := NewClient(tc.target, RoleStatistics.DB())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := c.Set(ctx, "k", tc.description, 0).Err()
		cancel()
		_ = c.Close()
		if (err == nil) != tc.wantOK {
			t.Errorf("%s: err = %v, want ok=%v", tc.description, err, tc.wantOK)
		}
	}
}

// TestProfileFor pins upstream's RedisProfileTarget.profile_target
// (common/types.py): an override replaces the base whole.
func TestProfileFor(t *testing.T) {
	p := Profile{
		Base:      Target{Addr: "base:1", Password: "p"},
		Overrides: map[Role]Target{RoleStatistics: {Addr: "stats:2"}},
	}
	cases := []struct {
		description string
		role        Role
		want        Target
	}{
		{"an overridden role", RoleStatistics, Target{Addr: "stats:2"}},
		{"a role without override", RoleStream, Target{Addr: "base:1", Password: "p"}},
	}
	for _, tc := range cases {
		if got := p.For(tc.role); got.Addr != tc.want.Addr || got.Password != tc.want.Password {
			t.Errorf("%s: got %+v, want %+v", tc.description, got, tc.want)
		}
	}
}

// TestRoleDBs pins common/defs/__init__.py REDIS_*_DB.
func TestRoleDBs(t *testing.T) {
	want := map[Role]int{RoleStatistics: 0, RoleRateLimit: 1, RoleLive: 2, RoleImage: 3, RoleStream: 4,
		RoleStreamLock: 5, RoleContainerLog: 6, RoleBgtask: 7, RoleTUS: 8}
	for _, r := range Roles() {
		if r.DB() != want[r] || !r.Known() {
			t.Errorf("%s: DB %d known %v, want DB %d", r, r.DB(), r.Known(), want[r])
		}
	}
	if Role("stats").Known() {
		t.Error(`"stats" is not an upstream role`)
	}
}
