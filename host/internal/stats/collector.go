package stats

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/proto/sdk"
)

// DefaultInterval is agent.utilization-metric.{node,container}.interval's
// default.
const DefaultInterval = 30 * time.Second

// KernelTTL is the expiry of {kernel_id} and container_count.{agent_id}
// (ValkeyStatClient's _DEFAULT_EXPIRATION).
const KernelTTL = 24 * time.Hour

// DefaultCountInterval is how often container_count.{agent_id} is written:
// upstream writes it at the end of every sync_container_lifecycles (10 s),
// whether container statistics are on or not.
const DefaultCountInterval = 10 * time.Second

// ttlFactor is upstream's _METRIC_TTL_FACTOR: {agent_id} lives 4 intervals.
const ttlFactor = 4

// ContainerCountKey is the DB 0 key with the number of the agent's kernels.
func ContainerCountKey(agentID string) string { return "container_count." + agentID }

// Plugins is the part of pluginhost.Host the collector reads: the running
// plugins, and the client of each. A plugin that is not running (starting,
// restarting, failed) is absent from Running or not ok from Plugin, and is
// skipped.
type Plugins interface {
	Running() []pluginhost.RunningPlugin
	Plugin(name string) (sdk.Plugin, sdk.Description, bool)
}

// ContainerTarget is one kernel's container, as the kernel manager knows it.
type ContainerTarget struct {
	KernelID    string
	ContainerID string
	PID         int
	// CgroupPath is relative to the cgroup root (v2) or to each
	// controller (v1), as sdk.ContainerRef wants it.
	CgroupPath string
}

// ContainersFunc lists the agent's kernels whose containers are measured.
type ContainersFunc func(ctx context.Context) ([]ContainerTarget, error)

// Options configures a Collector.
type Options struct {
	AgentID string
	// Redis is a client of the statistics database (DB 0), e.g.
	// events.NewRedisClient(opts, events.StatisticsDB).
	Redis   redis.Cmdable
	Plugins Plugins
	// Containers lists the kernels; nil measures no containers.
	Containers ContainersFunc
	// ContainerCount counts the agent's kernels that have a container, for
	// container_count.{agent_id}; nil counts those Containers lists with
	// one. Without both, no container_count is written.
	ContainerCount func(ctx context.Context) (int, error)
	// CountInterval defaults to DefaultCountInterval.
	CountInterval time.Duration
	// NodeInterval and ContainerInterval default to 30 s. DisableNode and
	// DisableContainer turn a loop of Run off (utilization-metric.*.enable).
	NodeInterval      time.Duration
	ContainerInterval time.Duration
	DisableNode       bool
	DisableContainer  bool
	// Policy chooses the stats filter and hook per metric; nil is
	// DefaultPolicy.
	Policy PolicyFunc
	Logger zerolog.Logger
	// Now is the clock of the rate computation; nil is time.Now.
	Now func() time.Time
	// OnNodeMetrics, when set, gets each plugin's NodeMetrics answer of
	// every round (for /metrics); nil metrics when the plugin is not
	// running. A failed call leaves the plugin's last answer in place.
	OnNodeMetrics func(plugin string, metrics []sdk.Metric)
}

// Collector keeps the moving statistics and writes them to Redis.
type Collector struct {
	opts Options

	nodeMu  sync.Mutex
	node    ordered[*metric]
	devices ordered[*ordered[*metric]]

	kernelMu sync.Mutex
	kernels  map[string]*ordered[*metric]
}

// New returns a Collector; call Run, or CollectNode and CollectContainers.
func New(opts Options) (*Collector, error) {
	if opts.AgentID == "" {
		return nil, errors.New("stats: no agent id")
	}
	if opts.Redis == nil || opts.Plugins == nil {
		return nil, errors.New("stats: Redis and Plugins are required")
	}
	if opts.NodeInterval <= 0 {
		opts.NodeInterval = DefaultInterval
	}
	if opts.ContainerInterval <= 0 {
		opts.ContainerInterval = DefaultInterval
	}
	if opts.CountInterval <= 0 {
		opts.CountInterval = DefaultCountInterval
	}
	if opts.ContainerCount == nil && opts.Containers != nil {
		containers := opts.Containers
		opts.ContainerCount = func(ctx context.Context) (int, error) {
			targets, err := containers(ctx)
			n := 0
			for _, t := range targets {
				if t.ContainerID != "" {
					n++
				}
			}
			return n, err
		}
	}
	if opts.Policy == nil {
		opts.Policy = DefaultPolicy
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Collector{opts: opts, kernels: map[string]*ordered[*metric]{}}, nil
}

// NodeTTL is the expiry of {agent_id}: int(4 × interval) seconds, at least 1.
func (c *Collector) NodeTTL() time.Duration {
	ttl := (ttlFactor * c.opts.NodeInterval).Truncate(time.Second)
	return max(ttl, time.Second)
}

// Run collects node stats every NodeInterval and container stats every
// ContainerInterval, and writes container_count every CountInterval (even
// with both collections disabled, as upstream), the first time at once,
// until ctx ends. Failures are logged and the next round goes on.
func (c *Collector) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if !c.opts.DisableNode {
		wg.Go(func() { c.loop(ctx, c.opts.NodeInterval, "node", c.CollectNode) })
	}
	if !c.opts.DisableContainer && c.opts.Containers != nil {
		wg.Go(func() { c.loop(ctx, c.opts.ContainerInterval, "container", c.CollectContainers) })
	}
	if c.opts.ContainerCount != nil {
		wg.Go(func() { c.loop(ctx, c.opts.CountInterval, "container_count", c.WriteContainerCount) })
	}
	wg.Wait()
}

func (c *Collector) loop(ctx context.Context, interval time.Duration, what string, collect func(context.Context) error) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := collect(ctx); err != nil && ctx.Err() == nil {
			c.opts.Logger.Warn().Err(err).Str("scope", what).Msg("stats collection failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pluginResult is one plugin's answer.
type pluginResult struct {
	name    string
	metrics []sdk.Metric
	err     error
}

// gather calls every running plugin concurrently, each with its own
// timeout, and returns the answers in plugin order. A failing plugin only
// loses its own metrics, as upstream's gather(return_exceptions=True).
func (c *Collector) gather(ctx context.Context, timeout time.Duration, call func(context.Context, sdk.Plugin) ([]sdk.Metric, error)) []pluginResult {
	running := c.opts.Plugins.Running()
	results := make([]pluginResult, len(running))
	var wg sync.WaitGroup
	for i, rp := range running {
		results[i].name = rp.Name
		client, _, ok := c.opts.Plugins.Plugin(rp.Name)
		if !ok {
			results[i].err = errNotRunning
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i].metrics, results[i].err = call(cctx, client)
		})
	}
	wg.Wait()
	return results
}

var errNotRunning = errors.New("plugin is not running")

// CollectNode polls every plugin's NodeMetrics once, updates the node and
// device statistics and writes {agent_id}.
func (c *Collector) CollectNode(ctx context.Context) error {
	results := c.gather(ctx, c.opts.NodeInterval, func(ctx context.Context, p sdk.Plugin) ([]sdk.Metric, error) {
		return p.NodeMetrics(ctx)
	})
	now := c.opts.Now()

	if hook := c.opts.OnNodeMetrics; hook != nil {
		for _, r := range results {
			switch {
			case r.err == nil:
				hook(r.name, r.metrics)
			case errors.Is(r.err, errNotRunning):
				hook(r.name, nil)
			}
		}
	}
	c.nodeMu.Lock()
	for _, r := range results {
		if r.err != nil {
			if !errors.Is(r.err, errNotRunning) {
				c.opts.Logger.Error().Err(r.err).Str("plugin", r.name).Msg("node metrics failed")
			}
			continue
		}
		for _, m := range r.metrics {
			policy := c.opts.Policy(ScopeNode, m)
			if m.PerNode != nil {
				observe(&c.node, m.Key, m, policy, *m.PerNode, now, false)
			}
			if len(m.PerDevice) == 0 {
				continue
			}
			perDevice, ok := c.devices.get(m.Key)
			if !ok {
				perDevice = &ordered[*metric]{}
				c.devices.set(m.Key, perDevice)
			}
			for _, dev := range sortedKeys(m.PerDevice) {
				observe(perDevice, dev, m, policy, m.PerDevice[dev], now, false)
			}
		}
	}
	node := wiremsg.Dict{}
	for _, key := range c.node.keys {
		node = append(node, wiremsg.KV{Key: key, Value: c.node.m[key].mv()})
	}
	devices := wiremsg.Dict{}
	for _, key := range c.devices.keys {
		perDevice := c.devices.m[key]
		values := wiremsg.Dict{}
		for _, dev := range perDevice.keys {
			values = append(values, wiremsg.KV{Key: dev, Value: perDevice.m[dev].mv()})
		}
		devices = append(devices, wiremsg.KV{Key: key, Value: values})
	}
	c.nodeMu.Unlock()

	payload, err := wiremsg.Marshal(wiremsg.Dict{{Key: "node", Value: node}, {Key: "devices", Value: devices}})
	if err != nil {
		return fmt.Errorf("stats: encode node stats: %w", err)
	}
	if err := c.opts.Redis.Set(ctx, c.opts.AgentID, payload, c.NodeTTL()).Err(); err != nil {
		return fmt.Errorf("stats: write node stats: %w", err)
	}
	return nil
}

// WriteContainerCount writes container_count.{agent_id}: the number of the
// agent's kernels with a container, as upstream counts its own containers.
func (c *Collector) WriteContainerCount(ctx context.Context) error {
	if c.opts.ContainerCount == nil {
		return nil
	}
	n, err := c.opts.ContainerCount(ctx)
	if err != nil {
		return fmt.Errorf("stats: count containers: %w", err)
	}
	if err := c.opts.Redis.Set(ctx, ContainerCountKey(c.opts.AgentID), strconv.Itoa(n), KernelTTL).Err(); err != nil {
		return fmt.Errorf("stats: write container count: %w", err)
	}
	return nil
}

// CollectContainers polls every plugin's ContainerMetrics for the agent's
// kernels once, updates their statistics and writes {kernel_id} for every
// kernel measured. Statistics of kernels no longer listed are dropped;
// their keys expire.
func (c *Collector) CollectContainers(ctx context.Context) error {
	if c.opts.Containers == nil {
		return nil
	}
	targets, err := c.opts.Containers(ctx)
	if err != nil {
		return fmt.Errorf("stats: list containers: %w", err)
	}
	kernelOf := make(map[string]string, len(targets))
	alive := make(map[string]bool, len(targets))
	refs := make([]sdk.ContainerRef, 0, len(targets))
	for _, t := range targets {
		alive[t.KernelID] = true
		if t.ContainerID == "" {
			continue
		}
		kernelOf[t.ContainerID] = t.KernelID
		refs = append(refs, sdk.ContainerRef{ContainerID: t.ContainerID, CgroupPath: t.CgroupPath, PID: t.PID})
	}

	var results []pluginResult
	if len(refs) > 0 {
		results = c.gather(ctx, ttlFactor*c.opts.ContainerInterval, func(ctx context.Context, p sdk.Plugin) ([]sdk.Metric, error) {
			return p.ContainerMetrics(ctx, refs)
		})
	}
	now := c.opts.Now()

	c.kernelMu.Lock()
	for kid := range c.kernels {
		if !alive[kid] {
			delete(c.kernels, kid)
		}
	}
	var updated []string
	seen := map[string]bool{}
	for _, r := range results {
		if r.err != nil {
			if !errors.Is(r.err, errNotRunning) {
				c.opts.Logger.Error().Err(r.err).Str("plugin", r.name).Msg("container metrics failed")
			}
			continue
		}
		for _, m := range r.metrics {
			policy := c.opts.Policy(ScopeContainer, m)
			for _, cid := range sortedKeys(m.PerContainer) {
				kid, ok := kernelOf[cid]
				if !ok {
					continue
				}
				if !seen[kid] {
					seen[kid] = true
					updated = append(updated, kid)
				}
				metrics, ok := c.kernels[kid]
				if !ok {
					metrics = &ordered[*metric]{}
					c.kernels[kid] = metrics
				}
				observe(metrics, m.Key, m, policy, m.PerContainer[cid], now, true)
			}
		}
	}
	payloads := make(map[string][]byte, len(updated))
	for _, kid := range updated {
		metrics := c.kernels[kid]
		values := wiremsg.Dict{}
		for _, key := range metrics.keys {
			values = append(values, wiremsg.KV{Key: key, Value: metrics.m[key].mv()})
		}
		payload, err := wiremsg.Marshal(values)
		if err != nil {
			c.kernelMu.Unlock()
			return fmt.Errorf("stats: encode kernel %s stats: %w", kid, err)
		}
		payloads[kid] = payload
	}
	c.kernelMu.Unlock()

	if len(updated) == 0 {
		return nil
	}
	pipe := c.opts.Redis.Pipeline()
	for _, kid := range updated {
		pipe.Set(ctx, kid, payloads[kid], KernelTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("stats: write container stats: %w", err)
	}
	return nil
}

// observe adds one measurement to the metric stored under key, creating it
// on first sight. A container metric first seen without a capacity (or with
// 0) takes its first value as the capacity, as upstream
// (capacity=measure.capacity or measure.value).
func observe(into *ordered[*metric], key string, m sdk.Metric, policy Policy, meas sdk.Measurement, now time.Time, container bool) {
	if existing, ok := into.get(key); ok {
		existing.update(meas.Value, meas.Capacity, now)
		return
	}
	var capacity *decimal.Decimal
	if meas.Capacity != nil {
		c := *meas.Capacity
		capacity = &c
	}
	if container && (capacity == nil || capacity.IsZero()) {
		v := meas.Value
		capacity = &v
	}
	into.set(key, newMetric(m.UnitHint, policy, meas.Value, capacity, now))
}

// ordered is a string-keyed map that remembers insertion order, as the
// Python dicts whose order the msgpack bytes show.
type ordered[V any] struct {
	keys []string
	m    map[string]V
}

func (o *ordered[V]) get(k string) (V, bool) {
	v, ok := o.m[k]
	return v, ok
}

func (o *ordered[V]) set(k string, v V) {
	if o.m == nil {
		o.m = map[string]V{}
	}
	if _, ok := o.m[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.m[k] = v
}

// sortedKeys gives a plugin's per-device or per-container map a stable
// order (a Go map has none).
func sortedKeys(m map[string]sdk.Measurement) []string {
	return slices.Sorted(maps.Keys(m))
}
