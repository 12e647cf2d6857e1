package httpapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the agent's Prometheus collectors in a registry of its own,
// so that two agents (or tests) in one process never share series.
type Metrics struct {
	registry *prometheus.Registry

	rpcRequests     *prometheus.CounterVec
	rpcDuration     *prometheus.HistogramVec
	kernels         *prometheus.GaugeVec
	slotAllocated   *prometheus.GaugeVec
	slotCapacity    *prometheus.GaugeVec
	pluginRestarts  *prometheus.CounterVec
	pluginState     *prometheus.GaugeVec
	eventQueueDepth prometheus.Gauge
	pluginNode      *pluginNodeMetrics
}

// NewMetrics creates the collectors and a registry holding them plus the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baiagent", Subsystem: "rpc", Name: "requests_total",
			Help: "Manager RPC calls handled, by method and result (success, failure, cancelled).",
		}, []string{"method", "result"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "baiagent", Subsystem: "rpc", Name: "duration_seconds",
			Help:    "Time from receiving a manager RPC call to sending its answer.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15, 60, 300},
		}, []string{"method", "result"}),
		kernels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "baiagent", Name: "kernels",
			Help: "Kernels known to the agent, by lifecycle state.",
		}, []string{"state"}),
		slotAllocated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "baiagent", Subsystem: "slot", Name: "allocated",
			Help: "Amount of a resource slot allocated to kernels (slot units: cores, bytes, devices).",
		}, []string{"slot"}),
		slotCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "baiagent", Subsystem: "slot", Name: "capacity",
			Help: "Amount of a resource slot the agent offers to the manager.",
		}, []string{"slot"}),
		pluginRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baiagent", Subsystem: "plugin", Name: "restarts_total",
			Help: "Compute plugin process restarts, by plugin.",
		}, []string{"plugin"}),
		pluginState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "baiagent", Subsystem: "plugin", Name: "state",
			Help: "1 for the state each compute plugin is in; other states are absent.",
		}, []string{"plugin", "state"}),
		eventQueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "baiagent", Subsystem: "events", Name: "queue_depth",
			Help: "Events waiting to be delivered to the manager's event bus.",
		}),
		pluginNode: newPluginNodeMetrics(),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rpcRequests, m.rpcDuration, m.kernels, m.slotAllocated, m.slotCapacity,
		m.pluginRestarts, m.pluginState, m.eventQueueDepth, m.pluginNode,
	)
	return m
}

// Registry is the registry /metrics serves; other parts of the agent may
// register their own collectors on it.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveRPC records one answered manager RPC call.
func (m *Metrics) ObserveRPC(method, result string, took time.Duration) {
	m.rpcRequests.WithLabelValues(method, result).Inc()
	m.rpcDuration.WithLabelValues(method, result).Observe(took.Seconds())
}

// SetKernelCounts replaces the kernels-by-state gauge; states missing from
// counts disappear rather than linger at their last value.
func (m *Metrics) SetKernelCounts(counts map[string]int) {
	m.kernels.Reset()
	for state, n := range counts {
		m.kernels.WithLabelValues(state).Set(float64(n))
	}
}

// SetSlot records one slot's allocated amount and capacity.
func (m *Metrics) SetSlot(slot string, allocated, capacity float64) {
	m.slotAllocated.WithLabelValues(slot).Set(allocated)
	m.slotCapacity.WithLabelValues(slot).Set(capacity)
}

// RemoveSlot drops a slot that no plugin offers any more.
func (m *Metrics) RemoveSlot(slot string) {
	m.slotAllocated.DeleteLabelValues(slot)
	m.slotCapacity.DeleteLabelValues(slot)
}

// IncPluginRestart counts one restart of a plugin.
func (m *Metrics) IncPluginRestart(plugin string) {
	m.pluginRestarts.WithLabelValues(plugin).Inc()
}

// SetPluginState marks the plugin's current state, clearing its previous one.
func (m *Metrics) SetPluginState(plugin, state string) {
	m.pluginState.DeletePartialMatch(prometheus.Labels{"plugin": plugin})
	m.pluginState.WithLabelValues(plugin, state).Set(1)
}

// SetEventQueueDepth records how many events wait for delivery.
func (m *Metrics) SetEventQueueDepth(n int) {
	m.eventQueueDepth.Set(float64(n))
}
