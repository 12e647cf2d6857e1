package etcdstore

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/config"
)

// defaultHelper is upstream's redis_helper_default_config (common/config.py).
func defaultHelper() RedisHelperConfig {
	return RedisHelperConfig{SocketTimeout: 5 * time.Second, SocketConnectTimeout: 2 * time.Second, ReconnectPollTimeout: 300 * time.Millisecond}
}

// TestParseRedis pins config/redis as upstream's redis_config_iv
// (common/config.py) and RedisConfig (common/configs/redis.py) read it.
func TestParseRedis(t *testing.T) {
	const base = "/sorna/ns/config/redis"
	sentinelSecret := "s-secret"
	cases := []struct {
		description string
		dict        map[string]any
		want        RedisSettings
	}{
		{
			"addr and password",
			map[string]any{"addr": "10.0.0.5:6379", "password": "p"},
			RedisSettings{Addr: &config.HostPort{Host: "10.0.0.5", Port: 6379}, Password: "p", Helper: defaultHelper()},
		},
		{
			"addr as a host/port table",
			map[string]any{"addr": map[string]any{"host": "redis.local", "port": "6380"}},
			RedisSettings{Addr: &config.HostPort{Host: "redis.local", Port: 6380}, Helper: defaultHelper()},
		},
		{
			"sentinel comma list with service name, sentinel password and TLS",
			map[string]any{
				"sentinel": "s1:26379,s2:26379", "service_name": "mymaster", "password": "p",
				"sentinel_password": "s-secret", "use_tls": "true", "tls_skip_verify": "True",
			},
			RedisSettings{
				Sentinel:    []config.HostPort{{Host: "s1", Port: 26379}, {Host: "s2", Port: 26379}},
				ServiceName: "mymaster", Password: "p", SentinelPassword: &sentinelSecret,
				UseTLS: true, TLSSkipVerify: true, Helper: defaultHelper(),
			},
		},
		{
			"kebab-case sentinel-password and request-timeout (pydantic aliases)",
			map[string]any{"addr": "r:1", "sentinel-password": "s-secret", "request-timeout": "1500"},
			RedisSettings{Addr: &config.HostPort{Host: "r", Port: 1}, SentinelPassword: &sentinelSecret, RequestTimeout: 1500 * time.Millisecond, Helper: defaultHelper()},
		},
		{
			"helper timeouts",
			map[string]any{"addr": "r:1", "redis_helper_config": map[string]any{"socket_timeout": "1.5", "socket_connect_timeout": "3", "reconnect_poll_timeout": "0.1"}},
			RedisSettings{Addr: &config.HostPort{Host: "r", Port: 1}, Helper: RedisHelperConfig{SocketTimeout: 1500 * time.Millisecond, SocketConnectTimeout: 3 * time.Second, ReconnectPollTimeout: 100 * time.Millisecond}},
		},
		{
			"per-role overrides replace the base whole",
			map[string]any{
				"addr": "r1:6379", "password": "p",
				"override_configs": map[string]any{
					"statistics": map[string]any{"addr": "r2:6380"},
					"stream":     map[string]any{"sentinel": "s:26379", "service_name": "m", "use_tls": "1"},
				},
			},
			RedisSettings{
				Addr: &config.HostPort{Host: "r1", Port: 6379}, Password: "p", Helper: defaultHelper(),
				Overrides: map[string]RedisSettings{
					"statistics": {Addr: &config.HostPort{Host: "r2", Port: 6380}, Helper: defaultHelper()},
					"stream":     {Sentinel: []config.HostPort{{Host: "s", Port: 26379}}, ServiceName: "m", UseTLS: true, Helper: defaultHelper()},
				},
			},
		},
		{
			"empty addr is no addr",
			map[string]any{"addr": "", "use_tls": "false"},
			RedisSettings{Helper: defaultHelper()},
		},
	}
	for _, tc := range cases {
		got, err := parseRedis(dictView{keyBase: base, dict: tc.dict}, true)
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.description, got, tc.want)
		}
	}
}

func TestParseRedisBadValuesNameTheKey(t *testing.T) {
	const base = "/sorna/ns/config/redis"
	cases := []struct {
		description string
		dict        map[string]any
		wantKey     string
	}{
		{"addr without a port", map[string]any{"addr": "redis.local"}, base + "/addr"},
		{"addr port out of range", map[string]any{"addr": "h:0"}, base + "/addr"},
		{"addr table without a port", map[string]any{"addr": map[string]any{"host": "h"}}, base + "/addr"},
		{"addr table with an empty host", map[string]any{"addr": map[string]any{"host": "", "port": "1"}}, base + "/addr"},
		{"sentinel without service_name", map[string]any{"sentinel": "a:1"}, base + "/sentinel"},
		{"sentinel item without a port", map[string]any{"sentinel": "a:1,b", "service_name": "m"}, base + "/sentinel"},
		{"sentinel with a trailing comma", map[string]any{"sentinel": "a:1,", "service_name": "m"}, base + "/sentinel"},
		{"sentinel that is a table", map[string]any{"sentinel": map[string]any{"0": "a:1"}, "service_name": "m"}, base + "/sentinel"},
		{"service_name that is a table", map[string]any{"addr": "r:1", "service_name": map[string]any{"x": "y"}}, base + "/service_name"},
		{"use_tls not a boolean", map[string]any{"addr": "r:1", "use_tls": "maybe"}, base + "/use_tls"},
		{"tls_skip_verify not a boolean", map[string]any{"addr": "r:1", "tls_skip_verify": "2"}, base + "/tls_skip_verify"},
		{"request_timeout not an integer", map[string]any{"addr": "r:1", "request_timeout": "1.5s"}, base + "/request_timeout"},
		{"request_timeout negative", map[string]any{"addr": "r:1", "request_timeout": "-1"}, base + "/request_timeout"},
		{"helper timeout not a number", map[string]any{"addr": "r:1", "redis_helper_config": map[string]any{"socket_timeout": "soon"}}, base + "/redis_helper_config/socket_timeout"},
		{"helper that is a value", map[string]any{"addr": "r:1", "redis_helper_config": "fast"}, base + "/redis_helper_config"},
		{"override_configs that is a value", map[string]any{"addr": "r:1", "override_configs": "stream"}, base + "/override_configs"},
		{"override role that is a value", map[string]any{"addr": "r:1", "override_configs": map[string]any{"stream": "r2:1"}}, base + "/override_configs/stream"},
		{"override with a bad addr", map[string]any{"addr": "r:1", "override_configs": map[string]any{"stream": map[string]any{"addr": "x"}}}, base + "/override_configs/stream/addr"},
		{"override sentinel without service_name", map[string]any{"addr": "r:1", "override_configs": map[string]any{"live": map[string]any{"sentinel": "s:1"}}}, base + "/override_configs/live/sentinel"},
		{"override with a bad boolean", map[string]any{"addr": "r:1", "override_configs": map[string]any{"image": map[string]any{"addr": "r:2", "use_tls": "yes please"}}}, base + "/override_configs/image/use_tls"},
	}
	for _, tc := range cases {
		_, err := parseRedis(dictView{keyBase: base, dict: tc.dict}, true)
		var keyErr *KeyError
		if !errors.As(err, &keyErr) || keyErr.Key != tc.wantKey {
			t.Errorf("%s: err = %v, want a KeyError for %s", tc.description, err, tc.wantKey)
		}
	}
}
