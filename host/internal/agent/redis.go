package agent

import (
	"fmt"
	"maps"
	"slices"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/redisconn"
)

// redisRolesUsed are the roles this agent opens clients for: events
// (stream), node and kernel statistics, installed images, kernel presence
// (live), and finished kernels' logs (container_log).
func redisRolesUsed() []redisconn.Role {
	return []redisconn.Role{redisconn.RoleStream, redisconn.RoleStatistics, redisconn.RoleImage, redisconn.RoleLive, redisconn.RoleContainerLog}
}

// redisProfile picks where each Redis role connects: etcd's config/redis
// when it names a server, replacing [redis] whole as upstream's
// read_agent_config does (agent/server.py), else agent.toml's [redis]; nil
// runs without Redis.
func (a *Agent) redisProfile(overlay *etcdstore.Overlay) (*redisconn.Profile, error) {
	var (
		profile redisconn.Profile
		source  string
		where   func(role string) string
	)
	switch {
	case overlay != nil && overlay.Redis != nil && (overlay.Redis.Addr != nil || len(overlay.Redis.Sentinel) > 0):
		profile = profileFromEtcd(*overlay.Redis)
		source = "etcd config/redis"
		where = func(role string) string { return "etcd config/redis/override_configs/" + role }
	case a.cfg.Redis != nil:
		profile = profileFromConfig(*a.cfg.Redis)
		source = "agent.toml [redis]"
		where = func(role string) string { return "agent.toml [redis.override-configs." + role + "]" }
	default:
		return nil, nil
	}
	if source == "agent.toml [redis]" && profile.Base.Addr == "" && len(profile.Base.Sentinel) == 0 {
		// [redis] without addr waits for etcd to name the server (upstream
		// fills it from config/redis); here etcd named none either.
		return nil, fmt.Errorf("no Redis address: etcd's config/redis names none, and agent.toml's [redis] has neither addr nor sentinel")
	}
	for _, role := range redisRolesUsed() {
		if err := profile.For(role).Validate(); err != nil {
			if _, overridden := profile.Overrides[role]; overridden {
				return nil, fmt.Errorf("%s: %w", where(string(role)), err)
			}
			return nil, fmt.Errorf("%s: %w", source, err)
		}
	}
	for _, role := range slices.Sorted(maps.Keys(profile.Overrides)) {
		if !role.Known() {
			a.log.Warn().Str("key", where(string(role))).Strs("roles", roleNames()).
				Msg("redis override names no upstream role; nothing reads it")
		}
	}
	for _, role := range redisRolesUsed() {
		a.log.Info().Str("role", string(role)).Int("db", role.DB()).Str("from", source).
			Stringer("target", profile.For(role)).Msg("redis target")
	}
	return &profile, nil
}

func roleNames() []string {
	var names []string
	for _, r := range redisconn.Roles() {
		names = append(names, string(r))
	}
	return names
}

func profileFromEtcd(s etcdstore.RedisSettings) redisconn.Profile {
	return profileOf(s, s.Overrides, targetFromEtcd)
}

// profileOf builds a profile from a base target and its per-role
// overrides, in etcd's or agent.toml's form (convert turns one into a
// redisconn.Target).
func profileOf[T any](base T, overrides map[string]T, convert func(T) redisconn.Target) redisconn.Profile {
	p := redisconn.Profile{Base: convert(base)}
	for role, o := range overrides {
		if p.Overrides == nil {
			p.Overrides = map[redisconn.Role]redisconn.Target{}
		}
		p.Overrides[redisconn.Role(role)] = convert(o)
	}
	return p
}

func targetFromEtcd(s etcdstore.RedisSettings) redisconn.Target {
	t := redisconn.Target{
		Sentinel:         hostPorts(s.Sentinel),
		ServiceName:      s.ServiceName,
		Password:         s.Password,
		SentinelPassword: s.SentinelPassword,
		UseTLS:           s.UseTLS,
		TLSSkipVerify:    s.TLSSkipVerify,
		RequestTimeout:   s.RequestTimeout,
	}
	if s.Addr != nil {
		t.Addr = s.Addr.String()
	}
	return t
}

func profileFromConfig(c config.RedisConfig) redisconn.Profile {
	return profileOf(c.RedisTarget, c.Overrides, targetFromConfig)
}

func targetFromConfig(c config.RedisTarget) redisconn.Target {
	t := redisconn.Target{
		Sentinel:         hostPorts(c.Sentinel),
		ServiceName:      c.ServiceName,
		Password:         c.Password,
		SentinelPassword: c.SentinelPassword,
		UseTLS:           c.UseTLS,
		TLSSkipVerify:    c.TLSSkipVerify,
		RequestTimeout:   c.RequestTimeout,
	}
	if c.Addr != (config.HostPort{}) {
		t.Addr = c.Addr.String()
	}
	return t
}

func hostPorts(hps []config.HostPort) []string {
	if len(hps) == 0 {
		return nil
	}
	out := make([]string, len(hps))
	for i, hp := range hps {
		out[i] = hp.String()
	}
	return out
}
