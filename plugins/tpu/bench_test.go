package tpu

import (
	"context"
	"testing"
)

// BenchmarkDiscover is one re-read of the 8-chip v5e host, the watch loop's
// cost per interval (the plugin has no metrics to poll).
func BenchmarkDiscover(b *testing.B) {
	sys, dev := extractFixture(b, fixtureV5e)
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
	p := configuredPlugin(b, fixtureConfig(b, fixtureV5e, nil))
	for b.Loop() {
		if _, err := p.NodeMetrics(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
