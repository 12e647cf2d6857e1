package httpapi

import (
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// pluginNodeMetrics exports the compute plugins' last node metrics under
// upstream's Prometheus name for device metrics (agent/metrics/metric.py:
// backendai_device_utilization{device_metric_name, agent_id, device_id,
// value_type}) plus a unit label, and the node totals under
// baiagent_node_utilization. It is a collector of its own so that a scrape
// sees one whole round, never a half-replaced one.
type pluginNodeMetrics struct {
	device, node *prometheus.Desc

	mu      sync.Mutex
	agentID string
	// byPlugin holds each plugin's last answer.
	byPlugin map[string][]sdk.Metric
}

func newPluginNodeMetrics() *pluginNodeMetrics {
	return &pluginNodeMetrics{
		device: prometheus.NewDesc("backendai_device_utilization",
			"Compute plugins' per-device node metrics (cuda_util, cuda_mem, cpu_util, ...); unit is the plugin's unit hint, pct is current/capacity in percent.",
			[]string{"device_metric_name", "agent_id", "device_id", "value_type", "unit"}, nil),
		node: prometheus.NewDesc("baiagent_node_utilization",
			"Compute plugins' node-wide metrics (the per_node measure); unit is the plugin's unit hint, pct is current/capacity in percent.",
			[]string{"node_metric_name", "agent_id", "value_type", "unit"}, nil),
		byPlugin: map[string][]sdk.Metric{},
	}
}

func (p *pluginNodeMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.device
	ch <- p.node
}

func (p *pluginNodeMetrics) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Two series with the same labels would fail the whole scrape: the
	// first plugin (by name) to report a metric key and device wins.
	seen := map[string]bool{}
	for _, plugin := range slices.Sorted(maps.Keys(p.byPlugin)) {
		for _, m := range p.byPlugin[plugin] {
			if m.PerNode != nil && !seen["node\x00"+m.Key] {
				seen["node\x00"+m.Key] = true
				emitMeasure(ch, p.node, *m.PerNode, m.Key, p.agentID, "", m.UnitHint)
			}
			for _, dev := range slices.Sorted(maps.Keys(m.PerDevice)) {
				if id := "dev\x00" + m.Key + "\x00" + dev; !seen[id] {
					seen[id] = true
					emitMeasure(ch, p.device, m.PerDevice[dev], m.Key, p.agentID, dev, m.UnitHint)
				}
			}
		}
	}
}

var hundred = decimal.NewFromInt(100)

// emitMeasure writes current, capacity and pct as upstream's value_type
// does; capacity and pct only when the plugin gave a capacity.
func emitMeasure(ch chan<- prometheus.Metric, desc *prometheus.Desc, v sdk.Measurement, key, agentID, device, unit string) {
	labels := func(valueType string) []string {
		if device == "" {
			return []string{key, agentID, valueType, unit}
		}
		return []string{key, agentID, device, valueType, unit}
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v.Value.InexactFloat64(), labels("current")...)
	if v.Capacity == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v.Capacity.InexactFloat64(), labels("capacity")...)
	if v.Capacity.IsPositive() {
		pct := v.Value.Mul(hundred).Div(*v.Capacity)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, pct.InexactFloat64(), labels("pct")...)
	}
}

// SetPluginNodeMetrics replaces what /metrics exports for one plugin with
// its latest NodeMetrics answer; nil drops the plugin (it stopped).
func (m *Metrics) SetPluginNodeMetrics(agentID, plugin string, metrics []sdk.Metric) {
	p := m.pluginNode
	p.mu.Lock()
	defer p.mu.Unlock()
	p.agentID = agentID
	if metrics == nil {
		delete(p.byPlugin, plugin)
		return
	}
	p.byPlugin[plugin] = slices.Clone(metrics)
}
