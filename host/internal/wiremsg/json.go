package wiremsg

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/shopspring/decimal"
)

// ToJSON turns a value into one encoding/json can write: maps get string
// keys, bytes become strings, UUIDs, enums, decimals and slot names their
// text, a ResourceSlot a map of decimal strings, a Tuple an array, and NaN
// or infinite floats null. A Dict stays a Dict, which writes itself in its
// order.
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
	case Tuple:
		return ToJSON([]any(x))
	case []byte:
		return string(x)
	case UUID:
		return x.String()
	case Enum:
		return x.String()
	case decimal.Decimal:
		return x.String()
	case SlotName:
		return string(x)
	case ResourceSlot:
		out := make(map[string]any, len(x))
		for _, s := range x {
			out[s.Name] = s.Amount.String()
		}
		return out
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	}
	return v
}

// MarshalJSON writes the dict as a JSON object in its own order (as
// pydantic's model_dump_json does), its values through ToJSON; keys must
// be strings or SlotNames.
func (d Dict) MarshalJSON() ([]byte, error) {
	out := []byte{'{'}
	for i, kv := range d {
		var key string
		switch k := kv.Key.(type) {
		case string:
			key = k
		case SlotName:
			key = string(k)
		default:
			return nil, fmt.Errorf("json: map key %T is not a string", kv.Key)
		}
		if i > 0 {
			out = append(out, ',')
		}
		kb, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(ToJSON(kv.Value))
		if err != nil {
			return nil, fmt.Errorf("json: value of %q: %w", key, err)
		}
		out = append(append(append(out, kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}
