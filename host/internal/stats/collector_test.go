package stats

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/proto/sdk"
)

// fakePlugin answers NodeMetrics and ContainerMetrics from scripts indexed
// by call number; every other sdk.Plugin method is left nil (never called).
type fakePlugin struct {
	sdk.Plugin
	mu        sync.Mutex
	nodeCalls int
	ctrCalls  int
	node      func(call int) ([]sdk.Metric, error)
	container func(call int, refs []sdk.ContainerRef) ([]sdk.Metric, error)
	gotRefs   []sdk.ContainerRef
}

func (p *fakePlugin) NodeMetrics(context.Context) ([]sdk.Metric, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nodeCalls++
	if p.node == nil {
		return nil, nil
	}
	return p.node(p.nodeCalls)
}

func (p *fakePlugin) ContainerMetrics(_ context.Context, refs []sdk.ContainerRef) ([]sdk.Metric, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctrCalls++
	p.gotRefs = refs
	if p.container == nil {
		return nil, nil
	}
	return p.container(p.ctrCalls, refs)
}

// fakeHost is a pluginhost stand-in: every plugin is listed by Running, but
// only those with running set hand out a client (a plugin restarting
// between the two calls).
type fakeHost struct {
	names   []string
	plugins map[string]*fakePlugin
	running map[string]bool
}

func (h *fakeHost) Running() []pluginhost.RunningPlugin {
	out := make([]pluginhost.RunningPlugin, len(h.names))
	for i, n := range h.names {
		out[i] = pluginhost.RunningPlugin{Name: n}
	}
	return out
}

func (h *fakeHost) Plugin(name string) (sdk.Plugin, sdk.Description, bool) {
	if !h.running[name] {
		return nil, sdk.Description{}, false
	}
	return h.plugins[name], sdk.Description{Name: name}, true
}

// fakeClock advances by step on every reading.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func meas(value, capacity string) sdk.Measurement {
	m := sdk.Measurement{Value: dec(value)}
	if capacity != "" {
		c := dec(capacity)
		m.Capacity = &c
	}
	return m
}

func measPtr(value, capacity string) *sdk.Measurement { m := meas(value, capacity); return &m }

// pick returns the i-th (1-based) of values, or the last.
func pick(call int, values ...string) string {
	return values[min(call, len(values))-1]
}

func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.StatisticsDB)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readMap reads a key and decodes its msgpack map.
func readMap(t *testing.T, c *redis.Client, key string) wiremsg.Map {
	t.Helper()
	raw, err := c.Get(context.Background(), key).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	v, err := wiremsg.Unmarshal(raw)
	if err != nil {
		t.Fatalf("decode %s: %v", key, err)
	}
	m, ok := v.(wiremsg.Map)
	if !ok {
		t.Fatalf("%s is %T, not a map", key, v)
	}
	return m
}

// lookup follows a path of map keys.
func lookup(t *testing.T, m wiremsg.Map, path ...string) any {
	t.Helper()
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(wiremsg.Map)
		if !ok {
			t.Fatalf("%v: %T is not a map", path, cur)
		}
		if cur, ok = mm[p]; !ok {
			t.Fatalf("%v: no %q in %v", path, p, mm)
		}
	}
	return cur
}

func checkMV(t *testing.T, description string, got any, want map[string]any) {
	t.Helper()
	mv, ok := got.(wiremsg.Map)
	if !ok {
		t.Fatalf("%s: MV is %T", description, got)
	}
	for k, w := range want {
		g, ok := mv[k]
		if !ok {
			t.Errorf("%s: %s missing in %v", description, k, mv)
			continue
		}
		if wi, isInt := w.(int); isInt {
			w = int64(wi)
		}
		if g != w {
			t.Errorf("%s: %s = %#v, want %#v", description, k, g, w)
		}
	}
	if len(mv) != len(want) {
		t.Errorf("%s: MV has keys %v, want exactly those of %v", description, mv, want)
	}
}

func checkTTL(t *testing.T, c *redis.Client, key string, lo, hi time.Duration) {
	t.Helper()
	ttl, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	if ttl <= lo || ttl > hi {
		t.Errorf("PTTL %s = %v, want in (%v, %v]", key, ttl, lo, hi)
	}
}

func TestNodeStats(t *testing.T) {
	srv := redistest.Start(t, false)
	client := newClient(t, srv)
	ctx := context.Background()

	cpu := &fakePlugin{node: func(call int) ([]sdk.Metric, error) {
		return []sdk.Metric{
			{Key: "cpu_util", Type: sdk.MetricUtilization, UnitHint: "msec",
				PerNode: measPtr(pick(call, "1500", "3000", "600"), "30000"),
				PerDevice: map[string]sdk.Measurement{
					"1": meas(pick(call, "500", "1000", "300"), "30000"),
					"0": meas(pick(call, "1000", "2000", "300"), "30000"),
				}},
			{Key: "mem", Type: sdk.MetricGauge, UnitHint: "bytes",
				PerNode:   measPtr(pick(call, "1000", "3000", "2000"), "8000"),
				PerDevice: map[string]sdk.Measurement{"root": meas(pick(call, "1000", "3000", "2000"), "8000")}},
		}, nil
	}}
	net := &fakePlugin{node: func(call int) ([]sdk.Metric, error) {
		return []sdk.Metric{
			{Key: "net_rx", Type: sdk.MetricGauge, UnitHint: "bps", PerNode: measPtr(pick(call, "0", "3000", "4500"), "")},
			{Key: "counter", Type: sdk.MetricAccumulation, PerNode: measPtr(pick(call, "100", "250", "700.5"), "")},
		}, nil
	}}
	accel := &fakePlugin{node: func(call int) ([]sdk.Metric, error) {
		return []sdk.Metric{{Key: "fake_util", Type: sdk.MetricUtilization, UnitHint: "percent",
			PerDevice: map[string]sdk.Measurement{"0": meas(pick(call, "10", "20", "65"), "100")}}}, nil
	}}
	broken := &fakePlugin{node: func(int) ([]sdk.Metric, error) { return nil, errors.New("device lost") }}
	restarting := &fakePlugin{node: func(int) ([]sdk.Metric, error) {
		t.Error("NodeMetrics called on a plugin that is not running")
		return nil, nil
	}}
	host := &fakeHost{
		names:   []string{"accel", "broken", "cpu", "net", "restarting"},
		plugins: map[string]*fakePlugin{"accel": accel, "broken": broken, "cpu": cpu, "net": net, "restarting": restarting},
		running: map[string]bool{"accel": true, "broken": true, "cpu": true, "net": true},
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0), step: 30 * time.Second}
	policy := func(scope Scope, m sdk.Metric) Policy {
		if m.Key == "counter" {
			return AllStatsPolicy(scope, m)
		}
		return DefaultPolicy(scope, m)
	}
	col, err := New(Options{AgentID: "i-agent", Redis: client, Plugins: host, Policy: policy,
		Now: clock.Now, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}

	// First poll: the exact bytes, key order included, as upstream's packb.
	if err := col.CollectNode(ctx); err != nil {
		t.Fatal(err)
	}
	mv := func(current, capacity, pct, unit string, extra ...wiremsg.KV) wiremsg.Dict {
		var c any
		if capacity != "" {
			c = capacity
		}
		return append(wiremsg.Dict{{Key: "current", Value: current}, {Key: "capacity", Value: c},
			{Key: "pct", Value: pct}, {Key: "unit_hint", Value: unit}}, extra...)
	}
	all := func(v string) []wiremsg.KV {
		return []wiremsg.KV{{Key: "stats.min", Value: v}, {Key: "stats.max", Value: v}, {Key: "stats.sum", Value: v},
			{Key: "stats.avg", Value: v}, {Key: "stats.diff", Value: "0"}, {Key: "stats.rate", Value: "0"}}
	}
	want, err := wiremsg.Marshal(wiremsg.Dict{
		{Key: "node", Value: wiremsg.Dict{
			{Key: "cpu_util", Value: mv("1500", "30000", "5", "msec")},
			{Key: "mem", Value: mv("1000", "8000", "12.5", "bytes", wiremsg.KV{Key: "stats.max", Value: "1000"})},
			{Key: "net_rx", Value: mv("0", "", "0.00", "bps")},
			{Key: "counter", Value: mv("100", "", "0.00", "count", all("100")...)},
		}},
		{Key: "devices", Value: wiremsg.Dict{
			{Key: "fake_util", Value: wiremsg.Dict{{Key: "0", Value: mv("10", "100", "10", "percent",
				wiremsg.KV{Key: "stats.max", Value: "10"}, wiremsg.KV{Key: "stats.avg", Value: "10"})}}},
			{Key: "cpu_util", Value: wiremsg.Dict{
				{Key: "0", Value: mv("1000", "30000", "3.33", "msec")},
				{Key: "1", Value: mv("500", "30000", "1.67", "msec")}}},
			{Key: "mem", Value: wiremsg.Dict{{Key: "root", Value: mv("1000", "8000", "12.5", "bytes", wiremsg.KV{Key: "stats.max", Value: "1000"})}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := client.Get(ctx, "i-agent").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, want) {
		v, _ := wiremsg.Unmarshal(raw)
		t.Errorf("first poll bytes differ from upstream's layout; got %v", v)
	}

	for range 2 {
		if err := col.CollectNode(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := readMap(t, client, "i-agent")
	cases := []struct {
		description string
		path        []string
		want        map[string]any
	}{
		{"node cpu_util is the plugin's busy time, no stats", []string{"node", "cpu_util"},
			map[string]any{"current": "600", "capacity": "30000", "pct": "2", "unit_hint": "msec"}},
		{"node mem keeps the max over the polls", []string{"node", "mem"},
			map[string]any{"current": "2000", "capacity": "8000", "pct": "25", "unit_hint": "bytes", "stats.max": "3000"}},
		{"net_rx current is the rate in bytes per second", []string{"node", "net_rx"},
			map[string]any{"current": "50", "capacity": nil, "pct": "0.00", "unit_hint": "bps"}},
		{"every stat of an accumulating counter", []string{"node", "counter"},
			map[string]any{"current": "700.5", "capacity": nil, "pct": "0.00", "unit_hint": "count",
				"stats.min": "100", "stats.max": "700.5", "stats.sum": "1050.5", "stats.avg": "350.167",
				"stats.diff": "450.5", "stats.rate": "15.017"}},
		{"device-only metric with avg and max", []string{"devices", "fake_util", "0"},
			map[string]any{"current": "65", "capacity": "100", "pct": "65", "unit_hint": "percent",
				"stats.avg": "31.667", "stats.max": "65"}},
		{"per-core cpu_util", []string{"devices", "cpu_util", "1"},
			map[string]any{"current": "300", "capacity": "30000", "pct": "1", "unit_hint": "msec"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			checkMV(t, tc.description, lookup(t, got, tc.path...), tc.want)
		})
	}
	if _, ok := lookup(t, got, "node").(wiremsg.Map)["fake_util"]; ok {
		t.Error("a device-only metric appears under node")
	}
	checkTTL(t, client, "i-agent", 119*time.Second, 120*time.Second)
	if broken.nodeCalls != 3 {
		t.Errorf("broken plugin called %d times, want 3 (failures must not stop polling)", broken.nodeCalls)
	}
}

func TestKernelStats(t *testing.T) {
	srv := redistest.Start(t, false)
	client := newClient(t, srv)
	ctx := context.Background()

	cpu := &fakePlugin{container: func(call int, refs []sdk.ContainerRef) ([]sdk.Metric, error) {
		util := map[string]sdk.Measurement{"c1": meas(pick(call, "1000", "16000"), "1000"), "c-unknown": meas("5", "1000")}
		used := map[string]sdk.Measurement{"c1": meas(pick(call, "1000", "16000"), "")}
		mem := map[string]sdk.Measurement{"c1": meas(pick(call, "100", "300", "200"), "1000")}
		ioRead := map[string]sdk.Measurement{"c1": meas(pick(call, "0", "600"), "")}
		for _, r := range refs {
			if r.ContainerID == "c2" {
				mem["c2"] = meas(pick(call, "700", "900", "900", "50"), "1000")
			}
		}
		return []sdk.Metric{
			{Key: "cpu_util", Type: sdk.MetricUtilization, UnitHint: "percent", PerContainer: util},
			{Key: "cpu_used", Type: sdk.MetricAccumulation, UnitHint: "msec", PerContainer: used},
			{Key: "mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: mem},
			{Key: "io_read", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: ioRead},
		}, nil
	}}
	broken := &fakePlugin{container: func(int, []sdk.ContainerRef) ([]sdk.Metric, error) {
		return nil, errors.New("nvml gone")
	}}
	host := &fakeHost{
		names:   []string{"broken", "cpu"},
		plugins: map[string]*fakePlugin{"broken": broken, "cpu": cpu},
		running: map[string]bool{"broken": true, "cpu": true},
	}
	var mu sync.Mutex
	targets := []ContainerTarget{
		{KernelID: "k1", ContainerID: "c1", PID: 101, CgroupPath: "system.slice/docker-c1.scope"},
		{KernelID: "k2", ContainerID: "c2", PID: 102, CgroupPath: "system.slice/docker-c2.scope"},
		{KernelID: "k3"}, // no container yet
	}
	containers := func(context.Context) ([]ContainerTarget, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]ContainerTarget(nil), targets...), nil
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0), step: 30 * time.Second}
	col, err := New(Options{AgentID: "i-agent", Redis: client, Plugins: host, Containers: containers,
		Now: clock.Now, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}

	// Poll 1: k2's value, byte for byte.
	if err := col.CollectContainers(ctx); err != nil {
		t.Fatal(err)
	}
	wantK2, _ := wiremsg.Marshal(wiremsg.Dict{{Key: "mem", Value: wiremsg.Dict{
		{Key: "current", Value: "700"}, {Key: "capacity", Value: "1000"}, {Key: "pct", Value: "70"},
		{Key: "unit_hint", Value: "bytes"}, {Key: "stats.max", Value: "700"}}}})
	if raw, err := client.Get(ctx, "k2").Bytes(); err != nil || !bytes.Equal(raw, wantK2) {
		t.Errorf("k2 after one poll: %q, %v; want %q", raw, err, wantK2)
	}
	wantRefs := []sdk.ContainerRef{
		{ContainerID: "c1", CgroupPath: "system.slice/docker-c1.scope", PID: 101},
		{ContainerID: "c2", CgroupPath: "system.slice/docker-c2.scope", PID: 102},
	}
	if len(cpu.gotRefs) != 2 || cpu.gotRefs[0] != wantRefs[0] || cpu.gotRefs[1] != wantRefs[1] {
		t.Errorf("plugin got refs %+v, want %+v", cpu.gotRefs, wantRefs)
	}

	// Poll 2.
	if err := col.CollectContainers(ctx); err != nil {
		t.Fatal(err)
	}
	k1 := readMap(t, client, "k1")
	cases := []struct {
		description string
		metric      string
		want        map[string]any
	}{
		{"cpu_util is the rate of cpu ms over 1000 ms/s; stats over the raw counter", "cpu_util",
			map[string]any{"current": "500", "capacity": "1000", "pct": "50", "unit_hint": "percent",
				"stats.avg": "8500", "stats.max": "16000"}},
		{"cpu_used is the counter, its capacity the first value (upstream)", "cpu_used",
			map[string]any{"current": "16000", "capacity": "1000", "pct": "1600", "unit_hint": "msec"}},
		{"mem with max", "mem",
			map[string]any{"current": "300", "capacity": "1000", "pct": "30", "unit_hint": "bytes", "stats.max": "300"}},
		{"io_read with rate; capacity 0 from the first value gives pct 0.00", "io_read",
			map[string]any{"current": "600", "capacity": "0", "pct": "0.00", "unit_hint": "bytes", "stats.rate": "20"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			checkMV(t, tc.description, lookup(t, k1, tc.metric), tc.want)
		})
	}
	if len(k1) != 4 {
		t.Errorf("k1 has metrics %v, want 4", k1)
	}
	if n, _ := client.Exists(ctx, "k3", "c-unknown").Result(); n != 0 {
		t.Errorf("%d keys written for a kernel without container or an unknown container", n)
	}
	checkTTL(t, client, "k1", KernelTTL-time.Minute, KernelTTL)
	if err := col.WriteContainerCount(ctx); err != nil {
		t.Fatal(err)
	}
	checkTTL(t, client, "container_count.i-agent", KernelTTL-time.Minute, KernelTTL)
	if got, _ := client.Get(ctx, "container_count.i-agent").Result(); got != "2" {
		t.Errorf("container_count = %q, want 2", got)
	}

	// Poll 3 without k2, poll 4 with it again: its statistics start over.
	mu.Lock()
	saved := targets[1]
	targets = []ContainerTarget{targets[0], targets[2]}
	mu.Unlock()
	if err := col.CollectContainers(ctx); err != nil {
		t.Fatal(err)
	}
	if err := col.WriteContainerCount(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := client.Get(ctx, "container_count.i-agent").Result(); got != "1" {
		t.Errorf("container_count without k2 = %q, want 1", got)
	}
	mu.Lock()
	targets = append(targets, saved)
	mu.Unlock()
	if err := col.CollectContainers(ctx); err != nil {
		t.Fatal(err)
	}
	checkMV(t, "k2 after its return", lookup(t, readMap(t, client, "k2"), "mem"),
		map[string]any{"current": "50", "capacity": "1000", "pct": "5", "unit_hint": "bytes", "stats.max": "50"})
	if broken.ctrCalls != 4 {
		t.Errorf("broken plugin called %d times, want 4", broken.ctrCalls)
	}
}

func TestRunAndRedisOutage(t *testing.T) {
	srv := redistest.Start(t, false)
	client := newClient(t, srv)
	cpu := &fakePlugin{
		node: func(int) ([]sdk.Metric, error) {
			return []sdk.Metric{{Key: "mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerNode: measPtr("1", "2")}}, nil
		},
		container: func(int, []sdk.ContainerRef) ([]sdk.Metric, error) {
			return []sdk.Metric{{Key: "mem", Type: sdk.MetricGauge, UnitHint: "bytes",
				PerContainer: map[string]sdk.Measurement{"c1": meas("1", "2")}}}, nil
		},
	}
	host := &fakeHost{names: []string{"cpu"}, plugins: map[string]*fakePlugin{"cpu": cpu}, running: map[string]bool{"cpu": true}}
	containers := func(context.Context) ([]ContainerTarget, error) {
		return []ContainerTarget{{KernelID: "k1", ContainerID: "c1"}}, nil
	}
	col, err := New(Options{AgentID: "i-agent", Redis: client, Plugins: host, Containers: containers,
		NodeInterval: 20 * time.Millisecond, ContainerInterval: 20 * time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		description string
		key         string
		ttlLo       time.Duration
		ttlHi       time.Duration
	}{
		{"node key, sub-second interval gives the 1 s minimum TTL", "i-agent", 0, time.Second},
		{"kernel key", "k1", KernelTTL - time.Minute, KernelTTL},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { col.Run(ctx); close(done) }()
	testutil.Eventually(t, 30*time.Second, "Run to write both keys in three polls", func() bool {
		n, _ := client.Exists(context.Background(), "i-agent", "k1").Result()
		cpu.mu.Lock()
		defer cpu.mu.Unlock()
		return n == 2 && min(cpu.nodeCalls, cpu.ctrCalls) >= 3
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			checkTTL(t, client, tc.key, tc.ttlLo, tc.ttlHi)
		})
	}

	srv.Stop(t)
	if err := col.CollectNode(context.Background()); err == nil {
		t.Error("CollectNode with Redis down returned no error")
	}
	if err := col.CollectContainers(context.Background()); err == nil {
		t.Error("CollectContainers with Redis down returned no error")
	}
	if err := col.WriteContainerCount(context.Background()); err == nil {
		t.Error("WriteContainerCount with Redis down returned no error")
	}
}

// TestContainerCountWithStatsOff pins upstream's set_container_count at the
// end of every sync_container_lifecycles (agent/agent.py, 26.8.1): the
// count is written even when utilization-metric container (and node)
// collection is disabled, and it counts only kernels with a container.
func TestContainerCountWithStatsOff(t *testing.T) {
	srv := redistest.Start(t, false)
	client := newClient(t, srv)
	host := &fakeHost{}
	var mu sync.Mutex
	calls := 0
	containers := func(context.Context) ([]ContainerTarget, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return []ContainerTarget{{KernelID: "k1", ContainerID: "c1"}, {KernelID: "k2", ContainerID: "c2"}, {KernelID: "k3"}}, nil
	}
	col, err := New(Options{AgentID: "i-agent", Redis: client, Plugins: host, Containers: containers,
		DisableNode: true, DisableContainer: true, CountInterval: 20 * time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { col.Run(ctx); close(done) }()
	testutil.Eventually(t, 30*time.Second, "container_count written twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls >= 2
	})
	cancel()
	<-done
	if got, _ := client.Get(context.Background(), "container_count.i-agent").Result(); got != "2" {
		t.Errorf("container_count = %q, want 2 (k3 has no container)", got)
	}
	checkTTL(t, client, "container_count.i-agent", KernelTTL-time.Minute, KernelTTL)
	if n, _ := client.Exists(context.Background(), "i-agent", "k1").Result(); n != 0 {
		t.Errorf("%d stats keys written with both collections disabled", n)
	}
}
