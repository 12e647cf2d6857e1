package wiremsg_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

func TestToJSON(t *testing.T) {
	cases := []struct {
		description string
		in          any
		want        string
	}{
		{"map with non-string keys and nested values", wiremsg.Map{int64(1): []any{[]byte("b"), wiremsg.Enum{Class: "ClusterMode", Value: "single-node"}}}, `{"1":["b","single-node"]}`},
		{"decimals and resource slots as strings", map[string]any{"d": decimal.RequireFromString("1.50"), "r": wiremsg.ResourceSlot{{Name: "cpu", Amount: decimal.NewFromInt(2)}}}, `{"d":"1.5","r":{"cpu":"2"}}`},
		{"NaN becomes null", []any{math.NaN(), 1.5}, `[null,1.5]`},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := json.Marshal(wiremsg.ToJSON(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
