package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

func measure(value, capacity string) sdk.Measurement {
	m := sdk.Measurement{Value: decimal.RequireFromString(value)}
	if capacity != "" {
		c := decimal.RequireFromString(capacity)
		m.Capacity = &c
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// TestPluginNodeMetricsExposition: plugins' node metrics appear on /metrics
// under upstream's backendai_device_utilization with their unit, a plugin
// that stopped disappears, and a clash between plugins does not break the
// scrape.
func TestPluginNodeMetricsExposition(t *testing.T) {
	cudaRound := []sdk.Metric{
		{Key: "cuda_mem", UnitHint: "bytes", PerNode: ptr(measure("22669623296", "150754820096")),
			PerDevice: map[string]sdk.Measurement{"0": measure("22669623296", "150754820096")}},
		{Key: "cuda_temp", UnitHint: "Celsius", PerDevice: map[string]sdk.Measurement{"0": measure("59", "")}},
		{Key: "cuda_util", UnitHint: "percent", PerDevice: map[string]sdk.Measurement{"0": measure("99", "100")}},
	}
	cases := []struct {
		description string
		rounds      map[string][]sdk.Metric // plugin -> its latest answer
		want        []string
		wantAbsent  []string
	}{
		{
			description: "a plugin's per-device and per-node measures with units, capacity and pct",
			rounds:      map[string][]sdk.Metric{"cuda": cudaRound},
			want: []string{
				`backendai_device_utilization{agent_id="i-test",device_id="0",device_metric_name="cuda_mem",unit="bytes",value_type="current"} 2.2669623296e+10`,
				`backendai_device_utilization{agent_id="i-test",device_id="0",device_metric_name="cuda_mem",unit="bytes",value_type="capacity"} 1.50754820096e+11`,
				`backendai_device_utilization{agent_id="i-test",device_id="0",device_metric_name="cuda_util",unit="percent",value_type="pct"} 99`,
				`backendai_device_utilization{agent_id="i-test",device_id="0",device_metric_name="cuda_temp",unit="Celsius",value_type="current"} 59`,
				`baiagent_node_utilization{agent_id="i-test",node_metric_name="cuda_mem",unit="bytes",value_type="current"} 2.2669623296e+10`,
			},
			wantAbsent: []string{`device_metric_name="cuda_temp",unit="Celsius",value_type="capacity"`},
		},
		{
			description: "a plugin that stopped is dropped",
			rounds:      map[string][]sdk.Metric{"cuda": nil},
			wantAbsent:  []string{"cuda_mem"},
		},
		{
			description: "two plugins reporting the same key and device: the first by name wins",
			rounds: map[string][]sdk.Metric{
				"cuda":  cudaRound,
				"rogue": {{Key: "cuda_util", UnitHint: "percent", PerDevice: map[string]sdk.Measurement{"0": measure("1", "100")}}},
			},
			want: []string{`device_metric_name="cuda_util",unit="percent",value_type="current"} 99`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			s := startServer(t)
			m := s.Metrics()
			m.SetPluginNodeMetrics("i-test", "cuda", cudaRound)
			for plugin, round := range tc.rounds {
				m.SetPluginNodeMetrics("i-test", plugin, round)
			}
			code, body := get(t, s, "/metrics")
			if code != http.StatusOK {
				t.Fatalf("code %d: %s", code, body)
			}
			text := string(body)
			for _, line := range tc.want {
				if !strings.Contains(text, line) {
					t.Errorf("/metrics lacks %q", line)
				}
			}
			for _, absent := range tc.wantAbsent {
				if strings.Contains(text, absent) {
					t.Errorf("/metrics has %q", absent)
				}
			}
			if t.Failed() {
				t.Logf("/metrics:\n%s", text)
			}
		})
	}
}
