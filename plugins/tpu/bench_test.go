package tpu

import (
	"context"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk/plugintest"
)

// BenchmarkDiscover is one re-read of the 8-chip v5e host, the watch loop's
// cost per interval (the plugin has no metrics to poll).
func BenchmarkDiscover(b *testing.B) {
	sys, dev := plugintest.ExtractSysfsFixture(b, fixtureV5e)
	cfg := defaultConfig()
	cfg.SysfsRoot, cfg.DevRoot = sys, dev
	for b.Loop() {
		if _, err := discover(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNodeMetrics is one (empty) metrics poll.
func BenchmarkNodeMetrics(b *testing.B) {
	p := plugintest.Configured(b, New(), plugintest.SysfsFixtureConfig(b, fixtureV5e, nil))
	for b.Loop() {
		if _, err := p.NodeMetrics(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
