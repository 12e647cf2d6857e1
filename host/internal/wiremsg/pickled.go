package wiremsg

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/shopspring/decimal"
)

// knownEnumValues maps the members of the enums the manager sends to their
// values, so that a by-name pickle (CPython 3.11) yields the same Enum as a
// by-value one (3.12+). Source: ai/backend/common/types.py.
var knownEnumValues = map[string]map[string]string{
	"ai.backend.common.types.ClusterMode": {
		"SINGLE_NODE": "single-node",
		"MULTI_NODE":  "multi-node",
	},
	"ai.backend.common.types.SessionTypes": {
		"INTERACTIVE": "interactive",
		"BATCH":       "batch",
		"INFERENCE":   "inference",
		"SYSTEM":      "system",
	},
	"ai.backend.common.types.AutoPullBehavior": {
		"DIGEST": "digest",
		"TAG":    "tag",
		"NONE":   "none",
	},
}

// decodePickledExt turns the pickle inside ext code into its Go value.
func decodePickledExt(code int8, payload []byte) (any, error) {
	obj, err := unpickle(payload)
	if err != nil {
		return nil, err
	}
	switch code {
	case ExtDecimal:
		return pickledDecimal(obj)
	case ExtEnum:
		return pickledEnum(obj)
	case ExtImageRef:
		return pickledImageRef(obj)
	case ExtResourceSlot:
		return pickledResourceSlot(obj)
	case ExtSlotName:
		return pickledSlotName(obj)
	case ExtBinarySize:
		return pickledBinarySize(obj)
	}
	return nil, fmt.Errorf("ext %d is not a pickled type", code)
}

// pickledDecimal accepts decimal.Decimal('1.5').
func pickledDecimal(obj any) (decimal.Decimal, error) {
	call, ok := obj.(*pyCall)
	if !ok || !isGlobal(call.Func, "decimal", "Decimal") || len(call.Args) != 1 {
		return decimal.Decimal{}, fmt.Errorf("decimal: unexpected pickle shape %s", describe(obj))
	}
	text, ok := call.Args[0].(string)
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("decimal: argument is %s, want str", describe(call.Args[0]))
	}
	d, err := decimal.NewFromString(text)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("decimal %q: %w", text, err)
	}
	return d, nil
}

// pickledEnum accepts Class(value) and getattr(Class, "NAME").
func pickledEnum(obj any) (Enum, error) {
	call, ok := obj.(*pyCall)
	if !ok {
		return Enum{}, fmt.Errorf("enum: unexpected pickle shape %s", describe(obj))
	}
	if isGlobal(call.Func, "builtins", "getattr") && len(call.Args) == 2 {
		class, ok1 := call.Args[0].(pyGlobal)
		name, ok2 := call.Args[1].(string)
		if !ok1 || !ok2 {
			return Enum{}, fmt.Errorf("enum: getattr(%s, %s)", describe(call.Args[0]), describe(call.Args[1]))
		}
		e := Enum{Module: class.Module, Class: class.Name, Name: name}
		if value, known := knownEnumValues[class.Module+"."+class.Name][name]; known {
			e.Value = value
		}
		return e, nil
	}
	class, ok := call.Func.(pyGlobal)
	if !ok || len(call.Args) != 1 {
		return Enum{}, fmt.Errorf("enum: unexpected pickle shape %s", describe(obj))
	}
	value, err := plainValue(call.Args[0])
	if err != nil {
		return Enum{}, fmt.Errorf("enum %s.%s: %w", class.Module, class.Name, err)
	}
	e := Enum{Module: class.Module, Class: class.Name, Value: value}
	if s, ok := value.(string); ok {
		for name, v := range knownEnumValues[class.Module+"."+class.Name] {
			if v == s {
				e.Name = name
			}
		}
	}
	return e, nil
}

// pickledImageRef accepts the dataclass form: NEWOBJ(ImageRef, ()) + BUILD({...}),
// or BUILD((None, {...})) should the class ever gain __slots__.
func pickledImageRef(obj any) (ImageRef, error) {
	o, ok := obj.(*pyObject)
	if !ok || !isGlobal(o.Class, "ai.backend.common.docker", "ImageRef") {
		return ImageRef{}, fmt.Errorf("ImageRef: unexpected pickle shape %s", describe(obj))
	}
	fields, err := objectFields(o)
	if err != nil {
		return ImageRef{}, fmt.Errorf("ImageRef: %w", err)
	}
	var ref ImageRef
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &ref.Name}, {"project", &ref.Project}, {"tag", &ref.Tag}, {"registry", &ref.Registry}, {"architecture", &ref.Architecture}} {
		v, present := fields.lookup(f.key)
		switch s := v.(type) {
		case string:
			*f.dst = s
		case nil:
			if !present && f.key != "project" {
				return ImageRef{}, fmt.Errorf("ImageRef: field %q is missing", f.key)
			}
		default:
			return ImageRef{}, fmt.Errorf("ImageRef: field %q is %s, want str", f.key, describe(v))
		}
	}
	if v, present := fields.lookup("is_local"); present {
		b, ok := v.(bool)
		if !ok {
			return ImageRef{}, fmt.Errorf("ImageRef: field is_local is %s, want bool", describe(v))
		}
		ref.IsLocal = b
	}
	return ref, nil
}

// pickledResourceSlot accepts NEWOBJ(ResourceSlot, ()) + BUILD((None, {"data": {k: Decimal}})).
func pickledResourceSlot(obj any) (ResourceSlot, error) {
	o, ok := obj.(*pyObject)
	if !ok || !isGlobal(o.Class, "ai.backend.common.types", "ResourceSlot") {
		return nil, fmt.Errorf("ResourceSlot: unexpected pickle shape %s", describe(obj))
	}
	fields, err := objectFields(o)
	if err != nil {
		return nil, fmt.Errorf("ResourceSlot: %w", err)
	}
	raw, _ := fields.lookup("data")
	data, ok := raw.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("ResourceSlot: data is %s, want dict", describe(raw))
	}
	slots := make(ResourceSlot, len(data.Keys))
	for i, k := range data.Keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("ResourceSlot: key %s, want str", describe(k))
		}
		amount, err := slotAmount(data.Values[i])
		if err != nil {
			return nil, fmt.Errorf("ResourceSlot[%q]: %w", name, err)
		}
		slots[name] = amount
	}
	return slots, nil
}

// slotAmount accepts Decimal, int and str amounts (UserDict holds whatever
// was put in; the manager normalizes to Decimal).
func slotAmount(v any) (decimal.Decimal, error) {
	switch a := v.(type) {
	case *pyCall:
		return pickledDecimal(a)
	case int64:
		return decimal.NewFromInt(a), nil
	case *big.Int:
		return decimal.NewFromBigInt(a, 0), nil
	case string:
		return decimal.NewFromString(a)
	}
	return decimal.Decimal{}, fmt.Errorf("amount is %s", describe(v))
}

// pickledSlotName accepts NEWOBJ(SlotName, ("cuda.device",)) with any state.
func pickledSlotName(obj any) (SlotName, error) {
	o, ok := obj.(*pyObject)
	if !ok || !isGlobal(o.Class, "ai.backend.common.types", "SlotName") || len(o.Args) != 1 {
		return "", fmt.Errorf("SlotName: unexpected pickle shape %s", describe(obj))
	}
	name, ok := o.Args[0].(string)
	if !ok {
		return "", fmt.Errorf("SlotName: argument is %s, want str", describe(o.Args[0]))
	}
	return SlotName(name), nil
}

// pickledBinarySize accepts NEWOBJ(BinarySize, (n,)) (an int subclass).
func pickledBinarySize(obj any) (BinarySize, error) {
	o, ok := obj.(*pyObject)
	if !ok || !isGlobal(o.Class, "ai.backend.common.types", "BinarySize") || len(o.Args) != 1 {
		return 0, fmt.Errorf("BinarySize: unexpected pickle shape %s", describe(obj))
	}
	n, ok := o.Args[0].(int64)
	if !ok {
		return 0, fmt.Errorf("BinarySize: argument is %s, want int", describe(o.Args[0]))
	}
	return BinarySize(n), nil
}

// objectFields merges BUILD's dict state and slot state into one dict.
func objectFields(o *pyObject) (*pyDict, error) {
	merged := &pyDict{}
	add := func(v any) error {
		switch s := v.(type) {
		case nil:
			return nil
		case *pyDict:
			merged.Keys = append(merged.Keys, s.Keys...)
			merged.Values = append(merged.Values, s.Values...)
			return nil
		}
		return fmt.Errorf("state is %s", describe(v))
	}
	if t, ok := o.State.(pyTuple); ok && len(t) == 2 {
		if err := add(t[0]); err != nil {
			return nil, err
		}
		return merged, add(t[1])
	}
	return merged, add(o.State)
}

// plainValue converts pickled plain data (as an enum value) to Go values.
func plainValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, int64, float64, string, *big.Int:
		return x, nil
	case pyBytes:
		return []byte(x), nil
	case pyTuple:
		out := make([]any, len(x))
		for i, item := range x {
			conv, err := plainValue(item)
			if err != nil {
				return nil, err
			}
			out[i] = conv
		}
		return out, nil
	}
	return nil, fmt.Errorf("value is %s, want plain data", describe(v))
}

func isGlobal(v any, module, name string) bool {
	g, ok := v.(pyGlobal)
	return ok && g.Module == module && g.Name == name
}

// describe names a pickled value for error messages without dumping it.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case pyGlobal:
		return x.Module + "." + x.Name
	case *pyCall:
		return "call of " + describe(x.Func)
	case *pyObject:
		return "instance of " + describe(x.Class)
	case pyTuple:
		return fmt.Sprintf("tuple of %d", len(x))
	case *pyDict:
		return "dict with keys " + strings.Join(dictKeyNames(x), ",")
	case *pyList:
		return fmt.Sprintf("list of %d", len(x.Items))
	}
	return fmt.Sprintf("%T", v)
}

func dictKeyNames(d *pyDict) []string {
	names := make([]string, 0, len(d.Keys))
	for _, k := range d.Keys {
		if s, ok := k.(string); ok {
			names = append(names, s)
		} else {
			names = append(names, fmt.Sprintf("%T", k))
		}
	}
	return names
}
