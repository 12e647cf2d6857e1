package rocm

import (
	"context"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

// BenchmarkNodeMetrics is one metrics poll over the 8-GPU MI300X fixture
// (10 devices), directly and through the gRPC client the agent uses.
func BenchmarkNodeMetrics(b *testing.B) {
	p := plugintest.Configured(b, New(), plugintest.SysfsFixtureConfig(b, fixtureMI300X, nil))
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.NodeMetrics(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc", func(b *testing.B) {
		client := sdk.TestClient(b, p)
		for b.Loop() {
			if _, err := client.NodeMetrics(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDiscover is one full re-read of the topology, the watch loop's
// cost per interval.
func BenchmarkDiscover(b *testing.B) {
	sys, dev := plugintest.ExtractSysfsFixture(b, fixtureMI300X)
	cfg := defaultConfig()
	cfg.SysfsRoot, cfg.DevRoot = sys, dev
	for b.Loop() {
		if _, err := discover(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
