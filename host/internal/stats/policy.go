package stats

import (
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
)

// PolicyFunc chooses the stats filter and current hook of a metric.
type PolicyFunc func(scope Scope, m sdk.Metric) Policy

type policyKey struct {
	scope Scope
	key   string
}

// upstreamPolicies are the stats filters and current hooks of the Python
// intrinsic plugins (agent/docker/intrinsic.py, 26.8.1).
var upstreamPolicies = map[policyKey]Policy{
	// Upstream hooks node cpu_util with stats.diff over psutil's
	// accumulated cpu times. The cpu plugin already reports the busy time
	// since its previous call, so no hook here gives the same current.
	{ScopeNode, "cpu_util"}:             {},
	{ScopeNode, "mem"}:                  {StatsFilter: []string{StatMax}},
	{ScopeNode, "disk"}:                 {},
	{ScopeNode, "net_rx"}:               {Hook: HookRate},
	{ScopeNode, "net_tx"}:               {Hook: HookRate},
	{ScopeContainer, "cpu_util"}:        {StatsFilter: []string{StatAvg, StatMax}, Hook: HookRate},
	{ScopeContainer, "cpu_used"}:        {},
	{ScopeContainer, "mem"}:             {StatsFilter: []string{StatMax}},
	{ScopeContainer, "io_read"}:         {StatsFilter: []string{StatRate}},
	{ScopeContainer, "io_write"}:        {StatsFilter: []string{StatRate}},
	{ScopeContainer, "net_rx"}:          {Hook: HookRate},
	{ScopeContainer, "net_tx"}:          {Hook: HookRate},
	{ScopeContainer, "io_scratch_size"}: {StatsFilter: []string{StatMax}},
}

// DefaultPolicy gives the intrinsic metrics upstream's filters and hooks,
// and the accelerator metrics those of upstream's accelerator plugins
// (cuda_open, rocm, mock, ...): "<dev>_mem" {max}; "<dev>_util", "_power",
// "_temperature" (and our "_temp") {avg, max}. Any other metric falls back
// on its type: gauge {max}, utilization {avg, max}, accumulation none; the
// hook is never set for them, since a hook changes what current means and
// only the plugin's author knows whether it should.
func DefaultPolicy(scope Scope, m sdk.Metric) Policy {
	if p, ok := upstreamPolicies[policyKey{scope, m.Key}]; ok {
		return p
	}
	switch {
	case strings.HasSuffix(m.Key, "_mem"):
		return Policy{StatsFilter: []string{StatMax}}
	case strings.HasSuffix(m.Key, "_util"), strings.HasSuffix(m.Key, "_power"),
		strings.HasSuffix(m.Key, "_temperature"), strings.HasSuffix(m.Key, "_temp"):
		return Policy{StatsFilter: []string{StatAvg, StatMax}}
	}
	switch m.Type {
	case sdk.MetricGauge:
		return Policy{StatsFilter: []string{StatMax}}
	case sdk.MetricUtilization:
		return Policy{StatsFilter: []string{StatAvg, StatMax}}
	}
	return Policy{}
}

// AllStatsPolicy is DefaultPolicy's hook with every "stats.*" entry but
// version, for managers or dashboards that want them all.
func AllStatsPolicy(scope Scope, m sdk.Metric) Policy {
	p := DefaultPolicy(scope, m)
	p.StatsFilter = []string{StatMin, StatMax, StatSum, StatAvg, StatDiff, StatRate}
	return p
}
