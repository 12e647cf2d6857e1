package wiremsg

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/shopspring/decimal"
)

// Each pickled ext type is read (pickledX, from the pickle machine's
// symbolic result) and written (pickleX, with the pickler) here, side by
// side, so that the two directions keep to one shape per type.

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

// Pickle returns the ext value packb writes for one of the pickled types
// (Decimal, Enum, ImageRef, ResourceSlot, SlotName, BinarySize): its ext
// code and pickle.dumps(value, protocol=5) as CPython 3.13 writes it.
func Pickle(v any) (Ext, error) {
	switch x := v.(type) {
	case decimal.Decimal:
		return Ext{ExtDecimal, pickleDecimal(x)}, nil
	case Enum:
		b, err := pickleEnum(x)
		return Ext{ExtEnum, b}, err
	case ImageRef:
		return Ext{ExtImageRef, pickleImageRef(x)}, nil
	case ResourceSlot:
		return Ext{ExtResourceSlot, pickleResourceSlot(x)}, nil
	case SlotName:
		return Ext{ExtSlotName, pickleSlotName(x)}, nil
	case BinarySize:
		return Ext{ExtBinarySize, pickleBinarySize(x)}, nil
	}
	return Ext{}, fmt.Errorf("pickle: %T is not a pickled ext type", v)
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

// writeDecimal writes Decimal(str) through its __reduce__: (Decimal, (str,)),
// the string as the agent builds slot amounts, Decimal(str(value)): plain
// digits, no exponent.
func (p *pickler) writeDecimal(d decimal.Decimal) {
	p.global("decimal", "Decimal")
	p.str(d.String())
	p.op(opTuple1)
	p.memoize()
	p.op(opReduce)
	p.memoize()
}

func pickleDecimal(d decimal.Decimal) []byte {
	p := newPickler()
	p.writeDecimal(d)
	return p.finish()
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

// pickleEnum writes Class(value) through REDUCE, as CPython 3.12+ pickles
// a member by value; the value is a str or an int.
func pickleEnum(e Enum) ([]byte, error) {
	p := newPickler()
	p.global(e.Module, e.Class)
	switch v := e.Value.(type) {
	case string:
		p.str(v)
	case int64:
		p.int(v)
	default:
		return nil, fmt.Errorf("pickle: enum %s.%s with a %T value", e.Module, e.Class, e.Value)
	}
	p.op(opTuple1)
	p.memoize()
	p.op(opReduce)
	p.memoize()
	return p.finish(), nil
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

// pickleImageRef writes the plain dataclass: NEWOBJ(ImageRef, ()) then
// BUILD({field: value}).
func pickleImageRef(ref ImageRef) []byte {
	p := newPickler()
	p.global(dockerModule, "ImageRef")
	p.op(opEmptyTuple, opNewObj)
	p.memoize()
	p.op(opEmptyDict)
	p.memoize()
	fields := []struct{ key, value string }{
		{"name", ref.Name}, {"project", ref.Project}, {"tag", ref.Tag},
		{"registry", ref.Registry}, {"architecture", ref.Architecture},
	}
	p.dictItems(len(fields)+1, func(i int) {
		if i < len(fields) {
			p.str(fields[i].key)
			p.str(fields[i].value)
			return
		}
		p.str("is_local")
		p.bool(ref.IsLocal)
	})
	p.op(opBuild)
	return p.finish()
}

// pickledResourceSlot accepts NEWOBJ(ResourceSlot, ()) + BUILD((None, {"data": {k: Decimal}})).
// A name the pickle sets twice keeps its first place and its last amount,
// as a dict does.
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
	slots := make(ResourceSlot, 0, len(data.Keys))
	at := make(map[string]int, len(data.Keys))
	for i, k := range data.Keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("ResourceSlot: key %s, want str", describe(k))
		}
		amount, err := slotAmount(data.Values[i])
		if err != nil {
			return nil, fmt.Errorf("ResourceSlot[%q]: %w", name, err)
		}
		if j, seen := at[name]; seen {
			slots[j].Amount = amount
			continue
		}
		at[name] = len(slots)
		slots = append(slots, Slot{Name: name, Amount: amount})
	}
	return slots, nil
}

// pickleResourceSlot writes NEWOBJ(ResourceSlot, ()) then
// BUILD((None, {"data": {name: Decimal}})), the state a UserDict with
// __slots__=("data",) reduces to.
func pickleResourceSlot(slots ResourceSlot) []byte {
	p := newPickler()
	p.global(typesModule, "ResourceSlot")
	p.op(opEmptyTuple, opNewObj)
	p.memoize()
	p.op(opNone, opEmptyDict)
	p.memoize()
	p.dictItems(1, func(int) {
		p.str("data")
		p.op(opEmptyDict)
		p.memoize()
		p.dictItems(len(slots), func(i int) {
			p.str(slots[i].Name)
			p.writeDecimal(slots[i].Amount)
		})
	})
	p.op(opTuple2)
	p.memoize()
	p.op(opBuild)
	return p.finish()
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

// pickleSlotName writes a SlotName that was never parsed:
// NEWOBJ(SlotName, (name,)) then
// BUILD(({"data": name}, {"_device_name": "", ..., "_parsed": False})).
func pickleSlotName(name SlotName) []byte {
	p := newPickler()
	p.global(typesModule, "SlotName")
	nameID := p.freshString(string(name))
	p.op(opTuple1)
	p.memoize()
	p.op(opNewObj)
	p.memoize()
	p.op(opEmptyDict)
	p.memoize()
	p.dictItems(1, func(int) {
		p.str("data")
		p.get(nameID) // UserString.data is the very string passed to __new__
	})
	p.op(opEmptyDict)
	p.memoize()
	slotState := []string{"_device_name", "_major_type", "_minor_type"}
	p.dictItems(len(slotState)+1, func(i int) {
		if i < len(slotState) {
			p.str(slotState[i])
			p.str("")
			return
		}
		p.str("_parsed")
		p.bool(false)
	})
	p.op(opTuple2)
	p.memoize()
	p.op(opBuild)
	return p.finish()
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

// pickleBinarySize writes NEWOBJ(BinarySize, (n,)): an int subclass with
// no instance state, so no BUILD.
func pickleBinarySize(n BinarySize) []byte {
	p := newPickler()
	p.global(typesModule, "BinarySize")
	p.int(int64(n))
	p.op(opTuple1)
	p.memoize()
	p.op(opNewObj)
	p.memoize()
	return p.finish()
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
