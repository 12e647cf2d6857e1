package wiremsg

import (
	"fmt"
	"math"

	"github.com/shopspring/decimal"
)

// ToJSON turns a decoded value into one encoding/json can write: maps get
// string keys, bytes become strings, UUIDs, enums and decimals their text,
// a ResourceSlot a map of decimal strings, and NaN or infinite floats null.
func ToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = ToJSON(item)
		}
		return out
	case Map:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[fmt.Sprint(k)] = ToJSON(item)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = ToJSON(item)
		}
		return out
	case []byte:
		return string(x)
	case UUID:
		return x.String()
	case Enum:
		return x.String()
	case decimal.Decimal:
		return x.String()
	case ResourceSlot:
		out := make(map[string]any, len(x))
		for k, d := range x {
			out[k] = d.String()
		}
		return out
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	}
	return v
}
