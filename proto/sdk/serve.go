package sdk

import (
	"context"
	"os"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// orphanPollInterval keeps a plugin's exit within 1 s of its agent's death
// (the conformance kit's bound) when the parent-death signal was lost.
const orphanPollInterval = 200 * time.Millisecond

// PluginName is the name under which the compute plugin is dispensed.
const PluginName = "compute"

// ProtocolVersion is the go-plugin protocol version of API 1.x. A new major
// API version gets a new protocol version, so one binary can serve several.
const ProtocolVersion = 1

// Handshake returns the go-plugin handshake shared by the agent and plugins.
// The cookie only stops a plugin binary from being run by hand by mistake.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "BAIAGENT_COMPUTE_PLUGIN",
		MagicCookieValue: "3f6b0c7e5d2a4e1c9a8b7f60d4c2e1a9",
	}
}

// GRPCPlugin plugs a Plugin into go-plugin. Impl is set on the plugin side
// only; the agent side dispenses a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// GRPCServer registers the plugin's service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	registerService(s, p.Impl)
	return nil
}

// GRPCClient returns the agent-side client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewClient(conn), nil
}

// PluginSets returns what the agent offers go-plugin for negotiation.
func PluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: &GRPCPlugin{}}}
}

// Logger returns a logger for plugin authors. It writes JSON lines to stderr,
// which the agent parses and re-logs under the plugin's name; stdout belongs
// to the handshake and must not be written to.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Info,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs a plugin until the agent stops it. Call it from main.
func Serve(impl Plugin, logger hclog.Logger) {
	if logger == nil {
		logger = Logger("plugin")
	}
	// A plugin mostly sleeps and answers small calls; with one P a call is
	// received, handled and answered without waking other OS threads, which
	// cuts the agent's round trip by about a fifth on a 2-core node. Blocking
	// driver calls still get their own threads. GOMAXPROCS in the plugin's
	// environment overrides this.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// Exit when the agent goes away even if the kernel's parent-death signal
	// was lost (the agent forks from a thread that may have exited).
	go exitWhenOrphaned(logger, os.Getppid(), orphanPollInterval)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &GRPCPlugin{Impl: impl}},
		},
		GRPCServer: newGRPCServer,
		Logger:     logger,
	})
}

// newGRPCServer is go-plugin's default server with a fixed pool of stream
// workers: the agent's calls are small and frequent, and reusing goroutines
// instead of starting one per call shortens every round trip.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	workers := uint32(max(2, runtime.GOMAXPROCS(0)))
	return grpc.NewServer(append(opts, grpc.NumStreamWorkers(workers))...)
}

func exitWhenOrphaned(logger hclog.Logger, parent int, every time.Duration) {
	if parent <= 1 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != parent {
			logger.Warn("agent process is gone; exiting", "agent_pid", parent)
			os.Exit(2)
		}
	}
}
