// Package stats collects the compute plugins' node and container metrics and
// writes them to Redis DB 0 the way the Python agent's StatContext does
// (ai/backend/agent/stats.py): {agent_id} = {"node": {metric: MV},
// "devices": {metric: {dev_id: MV}}} with a TTL of 4×interval,
// {kernel_id} = {metric: MV} with a TTL of 24 h, and
// container_count.{agent_id}. MV is upstream's MetricValue: current,
// capacity, pct, unit_hint and the "stats.*" entries the metric's filter
// selects, every number a decimal string.
package stats

import (
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// divPlaces is the number of decimal places kept by divisions (avg, rate,
// pct) before the final quantization. Python's Decimal context keeps 28
// significant digits; 24 places is at least as precise for the values
// metrics have, so the 3-place (2 for pct) result is the same.
const divPlaces = 24

// Hook is upstream's current_hook: what "current" reports instead of the
// raw measurement.
type Hook int

const (
	// HookNone reports the measurement itself.
	HookNone Hook = iota
	// HookDiff reports the increase since the previous measurement
	// (metric.stats.diff).
	HookDiff
	// HookRate reports the increase per second since the previous
	// measurement (metric.stats.rate).
	HookRate
)

// Stat names a MovingStatistics entry that can appear as "stats.<name>".
const (
	StatMin     = "min"
	StatMax     = "max"
	StatSum     = "sum"
	StatAvg     = "avg"
	StatDiff    = "diff"
	StatRate    = "rate"
	StatVersion = "version"
)

// statOrder is the order of MovingStatistics.to_serializable_dict().
var statOrder = []string{StatMin, StatMax, StatSum, StatAvg, StatDiff, StatRate, StatVersion}

// Policy is what a Python plugin's measurement carries besides its values
// and gRPC plugins cannot send: the stats filter and the current hook.
type Policy struct {
	// StatsFilter lists the Stat* names included as "stats.<name>".
	StatsFilter []string
	Hook        Hook
}

func (p Policy) has(stat string) bool {
	for _, s := range p.StatsFilter {
		if s == stat {
			return true
		}
	}
	return false
}

// Scope says whether a metric was measured for the node or for containers.
type Scope int

const (
	ScopeNode Scope = iota
	ScopeContainer
)

// point is one measurement and when it was taken.
type point struct {
	value decimal.Decimal
	at    time.Time
}

// movingStats is upstream's MovingStatistics: min, max, sum and count over
// every value seen, and the last two points for diff and rate.
type movingStats struct {
	sum, min, max decimal.Decimal
	count         int64
	last          []point // at most two, oldest first
}

func newMovingStats(v decimal.Decimal, at time.Time) movingStats {
	return movingStats{sum: v, min: v, max: v, count: 1, last: []point{{v, at}}}
}

func (s *movingStats) update(v decimal.Decimal, at time.Time) {
	s.sum = s.sum.Add(v)
	if v.LessThan(s.min) {
		s.min = v
	}
	if v.GreaterThan(s.max) {
		s.max = v
	}
	s.count++
	s.last = append(s.last, point{v, at})
	if len(s.last) > 2 {
		s.last = s.last[len(s.last)-2:]
	}
}

func (s *movingStats) avg() decimal.Decimal {
	return s.sum.DivRound(decimal.NewFromInt(s.count), divPlaces)
}

// delta is the increase between the last two points; a decrease (a counter
// reset, e.g. a restarted container) counts as 0, as upstream.
func (s *movingStats) delta() (decimal.Decimal, time.Duration, bool) {
	if len(s.last) != 2 {
		return decimal.Zero, 0, false
	}
	d := s.last[1].value.Sub(s.last[0].value)
	if d.IsNegative() {
		return decimal.Zero, 0, false
	}
	return d, s.last[1].at.Sub(s.last[0].at), true
}

func (s *movingStats) diff() decimal.Decimal {
	d, _, _ := s.delta()
	return d
}

// rate is the increase per second. Upstream divides by the perf_counter
// difference; a zero interval (which upstream never sees) gives 0.
func (s *movingStats) rate() decimal.Decimal {
	d, elapsed, ok := s.delta()
	if !ok || elapsed <= 0 {
		return decimal.Zero
	}
	return d.Mul(decimal.NewFromInt(int64(time.Second))).DivRound(decimal.NewFromInt(int64(elapsed)), divPlaces)
}

func (s *movingStats) value(stat string) any {
	switch stat {
	case StatMin:
		return formatValue(s.min, 3)
	case StatMax:
		return formatValue(s.max, 3)
	case StatSum:
		return formatValue(s.sum, 3)
	case StatAvg:
		return formatValue(s.avg(), 3)
	case StatDiff:
		return formatValue(s.diff(), 3)
	case StatRate:
		return formatValue(s.rate(), 3)
	case StatVersion:
		return 2
	}
	return nil
}

// metric is upstream's Metric: the latest value, the capacity and the
// moving statistics of one metric of the node, a device or a kernel.
type metric struct {
	unitHint string
	policy   Policy
	stats    movingStats
	current  decimal.Decimal
	capacity *decimal.Decimal
}

func newMetric(unitHint string, policy Policy, value decimal.Decimal, capacity *decimal.Decimal, at time.Time) *metric {
	if unitHint == "" {
		unitHint = "count" // NodeMeasurement/ContainerMeasurement's default
	}
	m := &metric{unitHint: unitHint, policy: policy, stats: newMovingStats(value, at), current: value, capacity: capacity}
	m.applyHook()
	return m
}

func (m *metric) update(value decimal.Decimal, capacity *decimal.Decimal, at time.Time) {
	if capacity != nil {
		c := *capacity
		m.capacity = &c
	}
	m.stats.update(value, at)
	m.current = value
	m.applyHook()
}

func (m *metric) applyHook() {
	switch m.policy.Hook {
	case HookDiff:
		m.current = m.stats.diff()
	case HookRate:
		m.current = m.stats.rate()
	}
}

// mv is Metric.to_serializable_dict(): the MetricValue dict in upstream's
// key order.
func (m *metric) mv() wiremsg.Dict {
	var capacity any
	pct := "0.00"
	if m.capacity != nil {
		capacity = formatValue(*m.capacity, 3)
		if m.capacity.IsPositive() {
			pct = formatValue(m.current.Mul(decimal.NewFromInt(100)).DivRound(*m.capacity, divPlaces), 2)
		}
	}
	out := wiremsg.Dict{
		{Key: "current", Value: formatValue(m.current, 3)},
		{Key: "capacity", Value: capacity},
		{Key: "pct", Value: pct},
		{Key: "unit_hint", Value: m.unitHint},
	}
	for _, stat := range statOrder {
		if m.policy.has(stat) {
			out = append(out, wiremsg.KV{Key: "stats." + stat, Value: m.stats.value(stat)})
		}
	}
	return out
}

// formatValue is upstream's _to_serializable_value: quantize to places
// decimals (ROUND_HALF_EVEN, Python's default context), then
// remove_exponent, which drops trailing zeros and the point of a whole
// number ("1.500" -> "1.5", "2.000" -> "2"). A negative value that rounds
// to zero keeps Python's sign: "-0".
func formatValue(v decimal.Decimal, places int32) string {
	r := v.RoundBank(places)
	s := r.String() // shopspring prints without exponent and trailing zeros
	if r.IsZero() && v.IsNegative() {
		return "-0"
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
