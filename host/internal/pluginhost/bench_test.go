package pluginhost

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// reportLatencies adds p50 and p99 of the per-call durations.
func reportLatencies(b *testing.B, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

func benchHost(b *testing.B) *Host {
	dir := testutil.ShortTempDir(b)
	src, err := builtFake()
	if err != nil {
		b.Fatal(err)
	}
	testutil.CopyExecutable(b, src, dir, ExecutablePrefix+"fake")
	h := New(Options{Dirs: []string{dir}, RuntimeDir: testutil.ShortTempDir(b), Logger: zerolog.Nop()})
	if err := h.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Stop)
	return h
}

// BenchmarkPluginRoundTrip measures one call from the host to a plugin
// subprocess and back (ListDevices of the fake plugin: 2 devices), next to
// go-plugin's bare gRPC health check on the same connection.
func BenchmarkPluginRoundTrip(b *testing.B) {
	h := benchHost(b)
	p, _, ok := h.Plugin("fake")
	if !ok {
		b.Fatalf("fake plugin not running: %+v", h.Statuses())
	}
	ctx := context.Background()
	b.Run("ListDevices", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if _, err := p.ListDevices(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatencies(b, lat)
	})
	b.Run("GoPluginHealthCheck", func(b *testing.B) {
		inst := h.instances[0]
		inst.mu.Lock()
		pc := inst.proc.pc
		inst.mu.Unlock()
		cp, err := pc.Client()
		if err != nil {
			b.Fatal(err)
		}
		gc := cp.(*plugin.GRPCClient)
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if err := gc.Ping(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatencies(b, lat)
	})
}

// BenchmarkHostStart measures agent start-up's plugin phase: discover,
// launch, handshake, describe, configure and list devices of every plugin
// (the cpu plugin and two fake accelerator plugins, launched in parallel).
func BenchmarkHostStart(b *testing.B) {
	dir := testutil.ShortTempDir(b)
	src, err := builtFake()
	if err != nil {
		b.Fatal(err)
	}
	testutil.BuildBinary(b, "github.com/baiagent/baiagent/plugins/cpu/cmd/baiagent-plugin-cpu", dir, ExecutablePrefix+"cpu")
	testutil.CopyExecutable(b, src, dir, ExecutablePrefix+"fake")
	testutil.CopyExecutable(b, src, dir, ExecutablePrefix+"fake2")
	runtimeDir := testutil.ShortTempDir(b)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		h := New(Options{Dirs: []string{dir}, RuntimeDir: runtimeDir, Logger: zerolog.Nop()})
		start := time.Now()
		if err := h.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		for _, s := range h.Statuses() {
			if s.State != StateRunning {
				b.Fatalf("%s is %s: %s", s.Name, s.State, s.Reason)
			}
		}
		b.StopTimer()
		h.Stop()
		b.StartTimer()
	}
	reportLatencies(b, lat)
}
