package stats

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// The expected strings were produced by CPython's decimal with upstream's
// _to_serializable_value (quantize, then remove_exponent).
func TestFormatValueAsUpstream(t *testing.T) {
	cases := []struct {
		description string
		value       string
		places      int32
		want        string
	}{
		{"zero", "0", 3, "0"},
		{"extra places are rounded", "1.2345", 3, "1.234"},
		{"half rounds to even (down)", "1.0005", 3, "1"},
		{"half rounds to even (up)", "1.0015", 3, "1.002"},
		{"whole number has no point", "100", 3, "100"},
		{"exponent is expanded", "5E+3", 3, "5000"},
		{"trailing zeros are dropped", "1.500", 3, "1.5"},
		{"tiny positive becomes 0", "0.0001", 3, "0"},
		{"tiny negative keeps Python's sign", "-0.0001", 3, "-0"},
		{"negative value", "-2.25", 3, "-2.25"},
		{"pct has two places", "33.333333", 2, "33.33"},
		{"large byte counts stay exact", "17179869184", 3, "17179869184"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := formatValue(decimal.RequireFromString(tc.value), tc.places); got != tc.want {
				t.Errorf("formatValue(%s, %d) = %q, want %q", tc.value, tc.places, got, tc.want)
			}
		})
	}
}

func TestMovingStatistics(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cases := []struct {
		description string
		values      []string
		step        time.Duration
		want        map[string]string
	}{
		{"one value has no diff or rate", []string{"5"}, 30 * time.Second,
			map[string]string{"min": "5", "max": "5", "sum": "5", "avg": "5", "diff": "0", "rate": "0"}},
		{"accumulating counter", []string{"100", "250", "700.5"}, 30 * time.Second,
			map[string]string{"min": "100", "max": "700.5", "sum": "1050.5", "avg": "350.167", "diff": "450.5", "rate": "15.017"}},
		{"counter reset gives 0 diff and rate", []string{"100", "900", "40"}, 10 * time.Second,
			map[string]string{"min": "40", "max": "900", "sum": "1040", "avg": "346.667", "diff": "0", "rate": "0"}},
		{"sub-second interval", []string{"0", "3"}, 250 * time.Millisecond,
			map[string]string{"min": "0", "max": "3", "sum": "3", "avg": "1.5", "diff": "3", "rate": "12"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			s := newMovingStats(decimal.RequireFromString(tc.values[0]), t0)
			for i, v := range tc.values[1:] {
				s.update(decimal.RequireFromString(v), t0.Add(time.Duration(i+1)*tc.step))
			}
			for stat, want := range tc.want {
				if got := s.value(stat); got != want {
					t.Errorf("stats.%s = %v, want %q", stat, got, want)
				}
			}
		})
	}
}

func TestMetricValue(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	dec := decimal.RequireFromString
	ptr := func(s string) *decimal.Decimal { d := dec(s); return &d }
	type sample struct {
		value    string
		capacity *decimal.Decimal
	}
	cases := []struct {
		description string
		unitHint    string
		policy      Policy
		samples     []sample
		want        map[string]any
	}{
		{"gauge with capacity", "bytes", Policy{StatsFilter: []string{StatMax}},
			[]sample{{"3000", ptr("8000")}, {"2000", nil}},
			map[string]any{"current": "2000", "capacity": "8000", "pct": "25", "unit_hint": "bytes", "stats.max": "3000"}},
		{"no capacity reports pct 0.00", "bps", Policy{Hook: HookRate},
			[]sample{{"0", nil}, {"3000", nil}},
			map[string]any{"current": "100", "capacity": nil, "pct": "0.00", "unit_hint": "bps"}},
		{"zero capacity reports pct 0.00", "count", Policy{},
			[]sample{{"5", ptr("0")}},
			map[string]any{"current": "5", "capacity": "0", "pct": "0.00", "unit_hint": "count"}},
		{"current 0 of a capacity is pct 0, not 0.00", "percent", Policy{},
			[]sample{{"0", ptr("100")}},
			map[string]any{"current": "0", "capacity": "100", "pct": "0", "unit_hint": "percent"}},
		{"diff hook: first sample reports 0", "msec", Policy{Hook: HookDiff},
			[]sample{{"1000", ptr("30000")}},
			map[string]any{"current": "0", "capacity": "30000", "pct": "0", "unit_hint": "msec"}},
		{"diff hook over two samples", "msec", Policy{Hook: HookDiff},
			[]sample{{"1000", ptr("30000")}, {"7000", ptr("30000")}},
			map[string]any{"current": "6000", "capacity": "30000", "pct": "20", "unit_hint": "msec"}},
		{"empty unit hint is count", "", Policy{},
			[]sample{{"1", nil}},
			map[string]any{"current": "1", "capacity": nil, "pct": "0.00", "unit_hint": "count"}},
		{"version is an int", "count", Policy{StatsFilter: []string{StatVersion, StatMin}},
			[]sample{{"1", nil}},
			map[string]any{"current": "1", "capacity": nil, "pct": "0.00", "unit_hint": "count", "stats.min": "1", "stats.version": 2}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			m := newMetric(tc.unitHint, tc.policy, dec(tc.samples[0].value), tc.samples[0].capacity, t0)
			for i, s := range tc.samples[1:] {
				m.update(dec(s.value), s.capacity, t0.Add(time.Duration(i+1)*30*time.Second))
			}
			got := m.mv()
			if len(got) != len(tc.want) {
				t.Errorf("MV has %d entries, want %d: %v", len(got), len(tc.want), got)
			}
			for key, want := range tc.want {
				if v, ok := got.Get(key); !ok || v != want {
					t.Errorf("%s = %#v (present %v), want %#v", key, v, ok, want)
				}
			}
			order := []string{"current", "capacity", "pct", "unit_hint"}
			for i, key := range order {
				if got[i].Key != key {
					t.Errorf("entry %d is %v, want %s", i, got[i].Key, key)
				}
			}
		})
	}
}
