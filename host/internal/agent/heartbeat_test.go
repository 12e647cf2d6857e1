package agent

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/heartbeat"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// loadSample loads one of the repository's configs/ files with no
// environment variables set.
func loadSample(t *testing.T, name string) *config.Config {
	t.Helper()
	env := config.SystemEnv()
	env.Lookup = func(string) (string, bool) { return "", false }
	cfg, _, err := config.Load(filepath.Join("..", "..", "..", "configs", name), env)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return cfg
}

// The shipped configs give a heartbeat the 26.8 manager accepts: region
// "local" (upstream's default, common/identity.py) and a public_host
// (agent/agent.py _get_public_host), decoded as the manager does.
func TestSampleConfigsHeartbeat(t *testing.T) {
	srv := redistest.Start(t, false)
	cases := []struct {
		description string
		file        string
		publicHost  func(a *Agent) string
	}{
		{"production sample: bind-host empty, so the RPC host", "agent.toml", func(a *Agent) string { return a.nodeAddress().IP }},
		{"dev config: bind-host 127.0.0.1", "agent.dev.toml", func(*Agent) string { return "127.0.0.1" }},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			a := New(loadSample(t, tc.file), zerolog.Nop())
			a.plugins = pluginhost.New(PluginOptions(a.cfg, zerolog.Nop()))
			a.detectBindHost(nil)
			bus, err := events.New(context.Background(), events.Options{
				AgentID: a.cfg.Agent.ID, Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: events.EncodingArgs,
				QueueDir: t.TempDir(), Logger: zerolog.Nop(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			if err := srv.Client(t, events.StreamDB).Del(context.Background(), events.StreamKey).Err(); err != nil {
				t.Fatal(err)
			}
			reader := managertest.NewReader(t, srv.Addr)
			if err := heartbeat.Beat(context.Background(), heartbeat.Options{
				AgentID: a.cfg.Agent.ID, Bus: bus,
				Source: heartbeat.SourceFunc(func(context.Context) (heartbeat.Info, error) { return a.heartbeatInfo(""), nil }),
			}); err != nil {
				t.Fatal(err)
			}
			ev := reader.WaitStream(5*time.Second, managertest.Named("agent_heartbeat"))
			info := ev.Args[0].(wiremsg.Map)
			if info["region"] != "local" {
				t.Errorf("region = %v, want local", info["region"])
			}
			if want := tc.publicHost(a); info["public_host"] != want || want == "" {
				t.Errorf("public_host = %v, want %q", info["public_host"], want)
			}
		})
	}
}

func TestPublicHost(t *testing.T) {
	subnet := netip.MustParsePrefix("10.20.0.0/16")
	cases := []struct {
		description    string
		publicHost     string
		advertisedHost string
		bindHost       string
		subnetBindHost string
		rpcHost        string
		want           string
	}{
		{"agent.public-host first", "ssh.example", "10.0.0.9", "10.0.0.8", "10.20.0.5", "10.0.0.7", "ssh.example"},
		{"then container.advertised-host", "", "10.0.0.9", "10.0.0.8", "10.20.0.5", "10.0.0.7", "10.0.0.9"},
		{"then container.bind-host", "", "", "10.0.0.8", "10.20.0.5", "10.0.0.7", "10.0.0.8"},
		{"then the address in the container subnet", "", "", "", "10.20.0.5", "10.0.0.7", "10.20.0.5"},
		{"then the RPC host", "", "", "", "", "10.0.0.7", "10.0.0.7"},
		{"bind-host 0.0.0.0 names no host", "", "", "0.0.0.0", "", "10.0.0.7", "10.0.0.7"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Agent.PublicHost = tc.publicHost
			cfg.Agent.RPCListenAddr = config.HostPort{Host: tc.rpcHost, Port: 6001}
			cfg.Container.AdvertisedHost = tc.advertisedHost
			cfg.Container.BindHost = tc.bindHost
			a := &Agent{cfg: cfg, log: zerolog.Nop(), subnetBindHost: tc.subnetBindHost}
			if got := a.publicHost(); got != tc.want {
				t.Errorf("public_host = %q, want %q", got, tc.want)
			}
		})
	}
	// detectBindHost only looks at the subnet when bind-host is empty.
	a := &Agent{cfg: &config.Config{}, log: zerolog.Nop()}
	a.cfg.Container.BindHost = "10.0.0.8"
	a.detectBindHost(&etcdstore.Overlay{ContainerSubnet: &subnet})
	if a.subnetBindHost != "" {
		t.Errorf("a configured bind-host was replaced by %q", a.subnetBindHost)
	}
}

// subnetIP is upstream's get_subnet_ip (agent/utils.py).
func TestSubnetIP(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("10.20.3.4").To16(), Mask: net.CIDRMask(16, 32)},
		&net.IPNet{IP: net.ParseIP("10.20.9.9"), Mask: net.CIDRMask(16, 32)},
	}
	prefix := func(s string) *netip.Prefix { p := netip.MustParsePrefix(s); return &p }
	cases := []struct {
		description string
		subnet      *netip.Prefix
		want        string
	}{
		{"no subnet configured", nil, ""},
		{"a /0 subnet means any: fall back", prefix("0.0.0.0/0"), ""},
		{"the first address inside, a 16-byte IPv4 too", prefix("10.20.0.0/16"), "10.20.3.4"},
		{"no address inside", prefix("192.168.0.0/24"), ""},
		{"IPv6", prefix("fe80::/64"), "fe80::1"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := subnetIP(tc.subnet, addrs); got != tc.want {
				t.Errorf("subnetIP = %q, want %q", got, tc.want)
			}
		})
	}
}
