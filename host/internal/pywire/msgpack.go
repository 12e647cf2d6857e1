package pywire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/shopspring/decimal"
)

// Ext type codes of ai/backend/common/msgpack.py.
const (
	extUUID         = 1
	extDecimal      = 3
	extEnum         = 6
	extImageRef     = 7
	extResourceSlot = 8
	extSlotName     = 9
)

// maxDepth bounds nesting; event arguments are a few levels deep.
const maxDepth = 64

// Tuple is a Python tuple: a msgpack array (strict_types packs tuples as
// arrays through the default hook).
type Tuple []any

// KV is one entry of an ordered map.
type KV struct {
	Key   any
	Value any
}

// Map is a Python dict with its insertion order. Go maps have none, and the
// order is visible in the msgpack bytes and in logs.
type Map []KV

// Get returns the value stored under key.
func (m Map) Get(key string) (any, bool) {
	for _, kv := range m {
		if k, ok := kv.Key.(string); ok && k == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// MarshalJSON writes the map as a JSON object in its own order; keys must be
// strings (or SlotNames).
func (m Map) MarshalJSON() ([]byte, error) {
	out := []byte{'{'}
	for i, kv := range m {
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
		vb, err := json.Marshal(jsonValue(kv.Value))
		if err != nil {
			return nil, fmt.Errorf("json: value of %q: %w", key, err)
		}
		out = append(append(append(out, kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// jsonValue turns the Python-only types into their JSON forms (pydantic's
// model_dump_json): Decimal and SlotName as strings, enums as their values.
func jsonValue(v any) any {
	switch x := v.(type) {
	case decimal.Decimal:
		return x.String()
	case SlotName:
		return string(x)
	case Enum:
		return x.Value
	case Tuple:
		return []any(x)
	}
	return v
}

// Marshal encodes v as ai.backend.common.msgpack.packb would: str as str,
// []byte as bin, ints in their smallest form, float64 as float 64, Tuple and
// slices as arrays, Map in order, map[string]any sorted by key, and Decimal,
// Enum, ImageRef, ResourceSlot and SlotName as pickled ext types.
func Marshal(v any) ([]byte, error) {
	var w msgpackWriter
	if err := w.value(v, 0); err != nil {
		return nil, err
	}
	return w.buf, nil
}

type msgpackWriter struct{ buf []byte }

func (w *msgpackWriter) byte1(b byte) { w.buf = append(w.buf, b) }

func (w *msgpackWriter) be16(b byte, n uint16) {
	w.buf = binary.BigEndian.AppendUint16(append(w.buf, b), n)
}

func (w *msgpackWriter) be32(b byte, n uint32) {
	w.buf = binary.BigEndian.AppendUint32(append(w.buf, b), n)
}

func (w *msgpackWriter) be64(b byte, n uint64) {
	w.buf = binary.BigEndian.AppendUint64(append(w.buf, b), n)
}

func (w *msgpackWriter) uint(n uint64) {
	switch {
	case n < 128:
		w.byte1(byte(n))
	case n <= math.MaxUint8:
		w.buf = append(w.buf, 0xcc, byte(n))
	case n <= math.MaxUint16:
		w.be16(0xcd, uint16(n))
	case n <= math.MaxUint32:
		w.be32(0xce, uint32(n))
	default:
		w.be64(0xcf, n)
	}
}

func (w *msgpackWriter) int(n int64) {
	switch {
	case n >= 0:
		w.uint(uint64(n))
	case n >= -32:
		w.byte1(byte(n))
	case n >= math.MinInt8:
		w.buf = append(w.buf, 0xd0, byte(n))
	case n >= math.MinInt16:
		w.be16(0xd1, uint16(n))
	case n >= math.MinInt32:
		w.be32(0xd2, uint32(n))
	default:
		w.be64(0xd3, uint64(n))
	}
}

func (w *msgpackWriter) str(s string) {
	switch n := len(s); {
	case n < 32:
		w.byte1(0xa0 | byte(n))
	case n <= math.MaxUint8:
		w.buf = append(w.buf, 0xd9, byte(n))
	case n <= math.MaxUint16:
		w.be16(0xda, uint16(n))
	default:
		w.be32(0xdb, uint32(n))
	}
	w.buf = append(w.buf, s...)
}

func (w *msgpackWriter) bin(b []byte) {
	switch n := len(b); {
	case n <= math.MaxUint8:
		w.buf = append(w.buf, 0xc4, byte(n))
	case n <= math.MaxUint16:
		w.be16(0xc5, uint16(n))
	default:
		w.be32(0xc6, uint32(n))
	}
	w.buf = append(w.buf, b...)
}

func (w *msgpackWriter) arrayHeader(n int) {
	switch {
	case n < 16:
		w.byte1(0x90 | byte(n))
	case n <= math.MaxUint16:
		w.be16(0xdc, uint16(n))
	default:
		w.be32(0xdd, uint32(n))
	}
}

func (w *msgpackWriter) mapHeader(n int) {
	switch {
	case n < 16:
		w.byte1(0x80 | byte(n))
	case n <= math.MaxUint16:
		w.be16(0xde, uint16(n))
	default:
		w.be32(0xdf, uint32(n))
	}
}

// ext writes an ext header in msgpack-python's choice of forms.
func (w *msgpackWriter) ext(code int8, payload []byte) {
	switch n := len(payload); {
	case n == 1:
		w.byte1(0xd4)
	case n == 2:
		w.byte1(0xd5)
	case n == 4:
		w.byte1(0xd6)
	case n == 8:
		w.byte1(0xd7)
	case n == 16:
		w.byte1(0xd8)
	case n <= math.MaxUint8:
		w.buf = append(w.buf, 0xc7, byte(n))
	case n <= math.MaxUint16:
		w.be16(0xc8, uint16(n))
	default:
		w.be32(0xc9, uint32(n))
	}
	w.buf = append(w.buf, byte(code))
	w.buf = append(w.buf, payload...)
}

func (w *msgpackWriter) value(v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("msgpack: nested deeper than %d", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		w.byte1(0xc0)
	case bool:
		if x {
			w.byte1(0xc3)
		} else {
			w.byte1(0xc2)
		}
	case int:
		w.int(int64(x))
	case int32:
		w.int(int64(x))
	case int64:
		w.int(x)
	case uint32:
		w.uint(uint64(x))
	case uint64:
		w.uint(x)
	case float64:
		w.be64(0xcb, math.Float64bits(x))
	case string:
		w.str(x)
	case []byte:
		w.bin(x)
	case [16]byte:
		w.ext(extUUID, x[:])
	case decimal.Decimal:
		w.ext(extDecimal, PickleDecimal(x))
	case Enum:
		w.ext(extEnum, PickleEnum(x))
	case ImageRef:
		w.ext(extImageRef, PickleImageRef(x))
	case ResourceSlot:
		w.ext(extResourceSlot, PickleResourceSlot(x))
	case SlotName:
		w.ext(extSlotName, PickleSlotName(x))
	case Tuple:
		return w.array([]any(x), depth)
	case []any:
		return w.array(x, depth)
	case []string:
		w.arrayHeader(len(x))
		for _, s := range x {
			w.str(s)
		}
	case Map:
		w.mapHeader(len(x))
		for _, kv := range x {
			if err := w.value(kv.Key, depth+1); err != nil {
				return err
			}
			if err := w.value(kv.Value, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		keys := slices.Sorted(maps.Keys(x))
		w.mapHeader(len(keys))
		for _, k := range keys {
			w.str(k)
			if err := w.value(x[k], depth+1); err != nil {
				return err
			}
		}
	case map[string]string:
		keys := slices.Sorted(maps.Keys(x))
		w.mapHeader(len(keys))
		for _, k := range keys {
			w.str(k)
			w.str(x[k])
		}
	default:
		return fmt.Errorf("msgpack: cannot encode %T", v)
	}
	return nil
}

func (w *msgpackWriter) array(items []any, depth int) error {
	w.arrayHeader(len(items))
	for _, item := range items {
		if err := w.value(item, depth+1); err != nil {
			return err
		}
	}
	return nil
}
