package etcdstore

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/config"
)

func TestReadOverlay(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	raw := rawClient(t, e.Endpoint())
	rawPut(t, raw, map[string]string{
		"/sorna/ns/config/redis/addr":                                  "redis.local:6379",
		"/sorna/ns/config/redis/password":                              "secret",
		"/sorna/ns/config/redis/use_tls":                               "true",
		"/sorna/ns/config/redis/redis_helper_config/socket_timeout":    "2.5",
		"/sorna/ns/config/redis/override_configs/stream/addr":          "stream.local:6380",
		"/sorna/ns/volumes/_mount":                                     "/mnt/vfroot",
		"/sorna/ns/volumes/fsprefix":                                   "data",
		"/sorna/ns/config/plugins/accelerator/cuda/device_mask":        "0,1",
		"/sorna/ns/nodes/agents/i-a/config/plugins/accelerator/rocm/x": "node",
		"/sorna/ns/config/plugins/cpu/cpu-overcommit-factor":           "2",
		"/sorna/ns/config/container/kernel-uid":                        "1000",
		"/sorna/ns/nodes/agents/i-a/config/container/kernel-gid":       "1001",
		"/sorna/ns/config/agent/api/pull-timeout":                      "60",
		"/sorna/ns/config/network/subnet/agent":                        "10.0.0.0/8",
		"/sorna/ns/config/watcher/file-io-timeout":                     "7.5",
	})
	overlay, err := c.ReadOverlay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := 1000, 1001
	agentSubnet := netip.MustParsePrefix("10.0.0.0/8")
	timeout := 7500 * time.Millisecond
	want := &Overlay{
		Redis: &RedisSettings{
			Addr:     &config.HostPort{Host: "redis.local", Port: 6379},
			Password: "secret",
			UseTLS:   true,
			Helper:   RedisHelperConfig{SocketTimeout: 2500 * time.Millisecond, SocketConnectTimeout: 2 * time.Second, ReconnectPollTimeout: 300 * time.Millisecond},
			Overrides: map[string]RedisSettings{"stream": {
				Addr:   &config.HostPort{Host: "stream.local", Port: 6380},
				Helper: RedisHelperConfig{SocketTimeout: 5 * time.Second, SocketConnectTimeout: 2 * time.Second, ReconnectPollTimeout: 300 * time.Millisecond},
			}},
		},
		Volumes: Volumes{Mount: "/mnt/vfroot", FSPrefix: "data"},
		Plugins: map[string]map[string]any{
			"cuda": {"device_mask": "0,1"},
			"rocm": {"x": "node"},
			"cpu":  {"cpu-overcommit-factor": "2"},
		},
		KernelUID:            &uid,
		KernelGID:            &gid,
		AgentSections:        map[string]map[string]any{"api": {"pull-timeout": "60"}},
		AgentSubnet:          &agentSubnet,
		WatcherFileIOTimeout: &timeout,
	}
	if !reflect.DeepEqual(overlay, want) {
		t.Errorf("overlay = %+v\nwant %+v", overlay, want)
	}

	container := config.ContainerConfig{KernelUID: -1, KernelGID: -1}
	overlay.ApplyContainer(&container)
	if container.KernelUID != 1000 || container.KernelGID != 1001 {
		t.Errorf("ApplyContainer: %+v", container)
	}
}

func TestReadOverlayEmpty(t *testing.T) {
	e := startTestEtcd(t)
	c := connectTest(t, e.Endpoint(), "ns", "i-a")
	overlay, err := c.ReadOverlay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if overlay.Redis != nil || overlay.KernelUID != nil || len(overlay.Plugins) != 0 || overlay.Volumes != (Volumes{}) || overlay.WatcherFileIOTimeout != nil {
		t.Errorf("empty etcd gave %+v", overlay)
	}
}

func TestReadOverlayBadValuesNameTheKey(t *testing.T) {
	cases := []struct {
		description string
		kvs         map[string]string
		wantKey     string
	}{
		{"redis addr without a port", map[string]string{"/sorna/ns/config/redis/addr": "redis.local"}, "/sorna/ns/config/redis/addr"},
		{"redis port out of range", map[string]string{"/sorna/ns/config/redis/addr": "h:70000"}, "/sorna/ns/config/redis/addr"},
		{"sentinel without service name", map[string]string{"/sorna/ns/config/redis/sentinel": "a:1,b:2"}, "/sorna/ns/config/redis/sentinel"},
		{"bad sentinel item", map[string]string{"/sorna/ns/config/redis/sentinel": "a:1,b", "/sorna/ns/config/redis/service_name": "m"}, "/sorna/ns/config/redis/sentinel"},
		{"bad boolean", map[string]string{"/sorna/ns/config/redis/use_tls": "maybe"}, "/sorna/ns/config/redis/use_tls"},
		{"bad helper timeout", map[string]string{"/sorna/ns/config/redis/redis_helper_config/socket_timeout": "soon"}, "/sorna/ns/config/redis/redis_helper_config/socket_timeout"},
		{"bad override addr", map[string]string{"/sorna/ns/config/redis/override_configs/stream/addr": "x"}, "/sorna/ns/config/redis/override_configs/stream/addr"},
		{"kernel uid in the node scope", map[string]string{"/sorna/ns/nodes/agents/i-a/config/container/kernel-uid": "root"}, "/sorna/ns/nodes/agents/i-a/config/container/kernel-uid"},
		{"relative mount", map[string]string{"/sorna/ns/volumes/mount": "mnt"}, "/sorna/ns/volumes/mount"},
		{"absolute fsprefix", map[string]string{"/sorna/ns/volumes/fsprefix": "/abs"}, "/sorna/ns/volumes/fsprefix"},
		{"plugin config that is a value, not a table", map[string]string{"/sorna/ns/config/plugins/accelerator/cuda": "on"}, "/sorna/ns/config/plugins/accelerator/cuda"},
		{"addr that is a table", map[string]string{"/sorna/ns/config/redis/addr/host": "h"}, "/sorna/ns/config/redis/addr"},
		{"subnet with host bits", map[string]string{"/sorna/ns/config/network/subnet/agent": "10.0.0.1/8"}, "/sorna/ns/config/network/subnet/agent"},
		{"file io timeout in the node scope", map[string]string{"/sorna/ns/nodes/agents/i-a/config/watcher/file-io-timeout": "-1"}, "/sorna/ns/nodes/agents/i-a/config/watcher/file-io-timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			e := startTestEtcd(t)
			c := connectTest(t, e.Endpoint(), "ns", "i-a")
			rawPut(t, rawClient(t, e.Endpoint()), tc.kvs)
			_, err := c.ReadOverlay(context.Background())
			var keyErr *KeyError
			if !errors.As(err, &keyErr) || keyErr.Key != tc.wantKey {
				t.Fatalf("err = %v, want a KeyError for %s", err, tc.wantKey)
			}
		})
	}
}

func TestMergePluginConfig(t *testing.T) {
	local := map[string]map[string]any{
		"cuda": {"device_mask": "0", "nested": map[string]any{"a": int64(1), "b": int64(2)}, "local-only": true},
		"tpu":  {"x": "y"},
	}
	overlay := &Overlay{Plugins: map[string]map[string]any{
		"cuda": {"device_mask": "0,1", "nested": map[string]any{"b": "20"}},
		"rocm": {"z": "1"},
	}}
	got := MergePluginConfig(local, overlay)
	want := map[string]map[string]any{
		"cuda": {"device_mask": "0,1", "nested": map[string]any{"a": int64(1), "b": "20"}, "local-only": true},
		"tpu":  {"x": "y"},
		"rocm": {"z": "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged = %#v\nwant %#v", got, want)
	}
	if local["cuda"]["device_mask"] != "0" || local["cuda"]["nested"].(map[string]any)["b"] != int64(2) {
		t.Errorf("MergePluginConfig modified its input: %#v", local)
	}
	if got := MergePluginConfig(local, nil); !reflect.DeepEqual(got, local) {
		t.Errorf("nil overlay changed the config: %#v", got)
	}
}
