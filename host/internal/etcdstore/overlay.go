package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/baiagent/baiagent/host/internal/config"
)

// KeyError says which etcd key held a value the agent cannot use.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("etcd key %s: %v", e.Key, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// RedisHelperConfig is config/redis/redis_helper_config.
type RedisHelperConfig struct {
	SocketTimeout        time.Duration
	SocketConnectTimeout time.Duration
	ReconnectPollTimeout time.Duration
}

// RedisSettings is config/redis (and each of its override_configs entries).
type RedisSettings struct {
	// Addr is nil when etcd names no address.
	Addr *config.HostPort
	// Sentinel, when set, replaces Addr and requires ServiceName.
	Sentinel    []config.HostPort
	ServiceName string
	Password    string
	// SentinelPassword is nil when the sentinels take Password.
	SentinelPassword *string
	UseTLS           bool
	TLSSkipVerify    bool
	// RequestTimeout is request_timeout (milliseconds in etcd); zero is unset.
	RequestTimeout time.Duration
	Helper         RedisHelperConfig
	// Overrides are per-role settings (override_configs/{role}); nil when none.
	Overrides map[string]RedisSettings
}

// Volumes is the volumes/ prefix: where vfolders are mounted on this node.
type Volumes struct {
	// Mount is empty when vfolders come through the storage proxy.
	Mount string
	// FSPrefix is relative to Mount.
	FSPrefix string
}

// Overlay is the configuration etcd adds to agent.toml, read from the
// merged (node, then global) scope.
type Overlay struct {
	// Redis is nil when etcd has no config/redis keys.
	Redis   *RedisSettings
	Volumes Volumes
	// Plugins holds config/plugins/accelerator/{name} by plugin name, and
	// config/plugins/cpu and config/plugins/memory under "cpu" and "memory".
	// Leaves are the strings etcd holds.
	Plugins map[string]map[string]any
	// KernelUID and KernelGID override container.kernel-uid/-gid when set.
	KernelUID *int
	KernelGID *int
	// AgentSections holds config/agent/{api,container-logs,kernel-lifecycles},
	// which override the local sections of the same names.
	AgentSections map[string]map[string]any
	// AgentSubnet and ContainerSubnet are config/network/subnet/{agent,container}.
	AgentSubnet     *netip.Prefix
	ContainerSubnet *netip.Prefix
	// WatcherFileIOTimeout is config/watcher/file-io-timeout; nil when unset.
	WatcherFileIOTimeout *time.Duration
}

// agentSectionNames are the config/agent subtrees upstream applies.
var agentSectionNames = [...]string{"api", "container-logs", "kernel-lifecycles"}

// ReadOverlay reads every etcd key the agent takes configuration from and
// checks the values; the first bad value is reported as a *KeyError.
func (c *Client) ReadOverlay(ctx context.Context) (*Overlay, error) {
	var overlay Overlay

	redisRead, err := c.getPrefix(ctx, ScopeMerged, "config/redis")
	if err != nil {
		return nil, err
	}
	if !redisRead.empty() {
		redis, err := parseRedis(redisRead, true)
		if err != nil {
			return nil, err
		}
		overlay.Redis = &redis
	}

	volumesRead, err := c.getPrefix(ctx, ScopeMerged, "volumes")
	if err != nil {
		return nil, err
	}
	if overlay.Volumes, err = parseVolumes(volumesRead); err != nil {
		return nil, err
	}

	overlay.Plugins = map[string]map[string]any{}
	accelerators, err := c.getPrefix(ctx, ScopeMerged, "config/plugins/accelerator")
	if err != nil {
		return nil, err
	}
	for _, name := range accelerators.names() {
		if name == "" {
			continue // a value at the prefix itself configures no plugin
		}
		sub, err := subDict(accelerators, name)
		if err != nil {
			return nil, err
		}
		overlay.Plugins[name] = sub.dict
	}
	for _, intrinsic := range []string{"cpu", "memory"} {
		read, err := c.getPrefix(ctx, ScopeMerged, "config/plugins/"+intrinsic)
		if err != nil {
			return nil, err
		}
		if !read.empty() {
			overlay.Plugins[intrinsic] = read.merged()
		}
	}

	containerRead, err := c.getPrefix(ctx, ScopeMerged, "config/container")
	if err != nil {
		return nil, err
	}
	if overlay.KernelUID, err = optInt(containerRead, "kernel-uid"); err != nil {
		return nil, err
	}
	if overlay.KernelGID, err = optInt(containerRead, "kernel-gid"); err != nil {
		return nil, err
	}

	agentRead, err := c.getPrefix(ctx, ScopeMerged, "config/agent")
	if err != nil {
		return nil, err
	}
	overlay.AgentSections = map[string]map[string]any{}
	for _, name := range agentSectionNames {
		if _, _, found := agentRead.lookup(name); !found {
			continue
		}
		sub, err := subDict(agentRead, name)
		if err != nil {
			return nil, err
		}
		overlay.AgentSections[name] = sub.dict
	}

	for _, subnet := range []struct {
		key  string
		dest **netip.Prefix
	}{
		{"config/network/subnet/agent", &overlay.AgentSubnet},
		{"config/network/subnet/container", &overlay.ContainerSubnet},
	} {
		if *subnet.dest, err = c.readSubnet(ctx, subnet.key); err != nil {
			return nil, err
		}
	}

	if overlay.WatcherFileIOTimeout, err = c.readSeconds(ctx, "config/watcher/file-io-timeout"); err != nil {
		return nil, err
	}
	return &overlay, nil
}

// fullKeyOf names where a merged single-key read found its value.
func (c *Client) fullKeyOf(ctx context.Context, key string) string {
	for _, prefix := range c.readPrefixes(ScopeMerged) {
		full := c.mangle(slash(prefix) + key)
		if resp, err := c.etcd.Get(ctx, full, clientv3CountOnly()...); err == nil && resp.Count > 0 {
			return full
		}
	}
	return c.mangle(key)
}

func (c *Client) readSubnet(ctx context.Context, key string) (*netip.Prefix, error) {
	raw, found, err := c.Get(ctx, ScopeMerged, key)
	if err != nil || !found {
		return nil, err
	}
	prefix, err := parseNetwork(raw)
	if err != nil {
		return nil, &KeyError{Key: c.fullKeyOf(ctx, key), Err: err}
	}
	return &prefix, nil
}

func (c *Client) readSeconds(ctx context.Context, key string) (*time.Duration, error) {
	raw, found, err := c.Get(ctx, ScopeMerged, key)
	if err != nil || !found {
		return nil, err
	}
	d, err := parseSeconds(raw)
	if err != nil {
		return nil, &KeyError{Key: c.fullKeyOf(ctx, key), Err: err}
	}
	return &d, nil
}

// view is a dict whose entries can name their etcd key.
type view interface {
	lookup(name string) (value any, key string, found bool)
}

// dictView is a subtree that came from a single scope.
type dictView struct {
	keyBase string
	dict    map[string]any
}

func (d dictView) lookup(name string) (any, string, bool) {
	v, ok := d.dict[name]
	return v, joinKey(d.keyBase, name), ok
}

func (r prefixRead) empty() bool {
	for _, s := range r.scopes {
		if len(s.dict) > 0 {
			return false
		}
	}
	return true
}

func (r prefixRead) names() []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range r.scopes {
		for name := range s.dict {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return names
}

func subDict(v view, name string) (dictView, error) {
	value, key, found := v.lookup(name)
	if !found {
		return dictView{}, nil
	}
	dict, ok := value.(map[string]any)
	if !ok {
		return dictView{}, &KeyError{Key: key, Err: errors.New("expected a table of keys under it, found a single value")}
	}
	return dictView{keyBase: key, dict: dict}, nil
}

func optString(v view, name string) (value string, key string, found bool, err error) {
	raw, key, found := v.lookup(name)
	if !found {
		return "", key, false, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", key, true, &KeyError{Key: key, Err: errors.New("expected a single value, found a table of keys under it")}
	}
	return s, key, true, nil
}

func optInt(v view, name string) (*int, error) {
	raw, key, found, err := optString(v, name)
	if err != nil || !found {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil {
		return nil, &KeyError{Key: key, Err: fmt.Errorf("%q is not an integer", raw)}
	}
	return &n, nil
}

func optBool(v view, name string) (bool, error) {
	raw, key, found, err := optString(v, name)
	if err != nil || !found {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "true", "yes", "1", "on":
		return true, nil
	case "false", "no", "0", "off", "":
		return false, nil
	}
	return false, &KeyError{Key: key, Err: fmt.Errorf("%q is not a boolean (true/false)", raw)}
}

func optSeconds(v view, name string, fallback time.Duration) (time.Duration, error) {
	raw, key, found, err := optString(v, name)
	if err != nil || !found {
		return fallback, err
	}
	d, err := parseSeconds(raw)
	if err != nil {
		return 0, &KeyError{Key: key, Err: err}
	}
	return d, nil
}

func parseSeconds(raw string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > math.MaxInt64/float64(time.Second) {
		return 0, fmt.Errorf("%q is not a number of seconds", raw)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func parseNetwork(raw string) (netip.Prefix, error) {
	raw = strings.TrimSpace(raw)
	prefix, err := netip.ParsePrefix(raw)
	if err != nil {
		// Python's ip_network accepts a bare address as a /32 or /128.
		addr, addrErr := netip.ParseAddr(raw)
		if addrErr != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network (like 10.0.0.0/24)", raw)
		}
		prefix = netip.PrefixFrom(addr, addr.BitLen())
	}
	if prefix.Masked() != prefix {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set", raw)
	}
	return prefix, nil
}

func parseHostPortValue(raw string) (config.HostPort, error) {
	hp, err := config.ParseHostPort(strings.TrimSpace(raw))
	if err != nil {
		return config.HostPort{}, err
	}
	if hp.Host == "" {
		return config.HostPort{}, fmt.Errorf("%q has an empty host", raw)
	}
	if hp.Port < 1 || hp.Port > 65535 {
		return config.HostPort{}, fmt.Errorf("%q: port must be between 1 and 65535", raw)
	}
	return hp, nil
}

func parseRedis(v view, allowOverrides bool) (RedisSettings, error) {
	var redis RedisSettings
	// Upstream's HostPortPair takes "host:port" or a {host, port} table.
	if raw, key, found := v.lookup("addr"); found {
		var hp config.HostPort
		var err error
		switch raw := raw.(type) {
		case string:
			if raw != "" {
				hp, err = parseHostPortValue(raw)
			}
		case map[string]any:
			hp, err = config.ParseHostPort(raw)
			if err == nil {
				hp, err = parseHostPortValue(hp.String())
			}
		}
		if err != nil {
			return redis, &KeyError{Key: key, Err: err}
		}
		if hp != (config.HostPort{}) {
			redis.Addr = &hp
		}
	}
	sentinelKey := ""
	if raw, key, found, err := optString(v, "sentinel"); err != nil {
		return redis, err
	} else if found && raw != "" {
		sentinelKey = key
		for _, item := range strings.Split(raw, ",") {
			hp, err := parseHostPortValue(item)
			if err != nil {
				return redis, &KeyError{Key: key, Err: err}
			}
			redis.Sentinel = append(redis.Sentinel, hp)
		}
	}
	var err error
	if redis.ServiceName, _, _, err = optString(v, "service_name"); err != nil {
		return redis, err
	}
	if sentinelKey != "" && redis.ServiceName == "" {
		return redis, &KeyError{Key: sentinelKey, Err: errors.New("a sentinel list needs service_name beside it")}
	}
	if redis.Password, _, _, err = optString(v, "password"); err != nil {
		return redis, err
	}
	// sentinel_password and request_timeout are not in upstream's trafaret
	// (common/config.py), so pydantic's kebab-case aliases reach them too.
	for _, name := range []string{"sentinel_password", "sentinel-password"} {
		if raw, _, found, err := optString(v, name); err != nil {
			return redis, err
		} else if found {
			redis.SentinelPassword = &raw
			break
		}
	}
	for _, name := range []string{"request_timeout", "request-timeout"} {
		ms, err := optInt(v, name)
		if err != nil {
			return redis, err
		}
		if ms != nil {
			if *ms < 0 {
				_, key, _ := v.lookup(name)
				return redis, &KeyError{Key: key, Err: fmt.Errorf("%d milliseconds is negative", *ms)}
			}
			redis.RequestTimeout = time.Duration(*ms) * time.Millisecond
			break
		}
	}
	if redis.UseTLS, err = optBool(v, "use_tls"); err != nil {
		return redis, err
	}
	if redis.TLSSkipVerify, err = optBool(v, "tls_skip_verify"); err != nil {
		return redis, err
	}
	helper, err := subDict(v, "redis_helper_config")
	if err != nil {
		return redis, err
	}
	if redis.Helper.SocketTimeout, err = optSeconds(helper, "socket_timeout", 5*time.Second); err != nil {
		return redis, err
	}
	if redis.Helper.SocketConnectTimeout, err = optSeconds(helper, "socket_connect_timeout", 2*time.Second); err != nil {
		return redis, err
	}
	if redis.Helper.ReconnectPollTimeout, err = optSeconds(helper, "reconnect_poll_timeout", 300*time.Millisecond); err != nil {
		return redis, err
	}
	if !allowOverrides {
		return redis, nil
	}
	overrides, err := subDict(v, "override_configs")
	if err != nil {
		return redis, err
	}
	for role := range overrides.dict {
		roleView, err := subDict(overrides, role)
		if err != nil {
			return redis, err
		}
		settings, err := parseRedis(roleView, false)
		if err != nil {
			return redis, err
		}
		if redis.Overrides == nil {
			redis.Overrides = map[string]RedisSettings{}
		}
		redis.Overrides[role] = settings
	}
	return redis, nil
}

func parseVolumes(v view) (Volumes, error) {
	var volumes Volumes
	// Upstream accepts "mount" or "_mount" (and "fsprefix" or "_fsprefix").
	for _, name := range []string{"mount", "_mount"} {
		raw, key, found, err := optString(v, name)
		if err != nil {
			return volumes, err
		}
		if found && raw != "" {
			if !path.IsAbs(raw) {
				return volumes, &KeyError{Key: key, Err: fmt.Errorf("%q must be an absolute directory path", raw)}
			}
			volumes.Mount = raw
			break
		}
	}
	for _, name := range []string{"fsprefix", "_fsprefix"} {
		raw, key, found, err := optString(v, name)
		if err != nil {
			return volumes, err
		}
		if found {
			if path.IsAbs(raw) {
				return volumes, &KeyError{Key: key, Err: fmt.Errorf("%q must be a relative path", raw)}
			}
			volumes.FSPrefix = raw
			break
		}
	}
	return volumes, nil
}

// MergePluginConfig returns agent.toml's [plugins.<name>] tables with the
// overlay's plugin config merged over them, etcd winning key by key (tables
// merge recursively; a value replaces a table and the other way round).
// Neither input is modified.
func MergePluginConfig(local map[string]map[string]any, overlay *Overlay) map[string]map[string]any {
	out := make(map[string]map[string]any, len(local))
	for name, table := range local {
		out[name] = deepCopy(table)
	}
	if overlay == nil {
		return out
	}
	for name, table := range overlay.Plugins {
		base := out[name]
		if base == nil {
			base = map[string]any{}
		}
		mergeInto(base, table)
		out[name] = base
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for key, value := range src {
		srcTable, srcIsTable := value.(map[string]any)
		dstTable, dstIsTable := dst[key].(map[string]any)
		switch {
		case srcIsTable && dstIsTable:
			mergeInto(dstTable, srcTable)
		case srcIsTable:
			dst[key] = deepCopy(srcTable)
		default:
			dst[key] = value
		}
	}
}

func deepCopy(table map[string]any) map[string]any {
	out := maps.Clone(table)
	if out == nil {
		out = map[string]any{}
	}
	for key, value := range out {
		if sub, ok := value.(map[string]any); ok {
			out[key] = deepCopy(sub)
		}
	}
	return out
}

// ApplyContainer sets the container uid/gid the overlay overrides.
func (o *Overlay) ApplyContainer(container *config.ContainerConfig) {
	if o.KernelUID != nil {
		container.KernelUID = *o.KernelUID
	}
	if o.KernelGID != nil {
		container.KernelGID = *o.KernelGID
	}
}
