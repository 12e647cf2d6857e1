package rpcserver

import (
	"fmt"
	"math"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// The one set of readers of decoded arguments. Each names the value it
// reads by its path: argPath(method, name) for a whole argument, or a
// path inside one such as configs[0]["image"].

// argPath is the path of a method's argument: "f(): argument 'x'".
func argPath(method, name string) string {
	return fmt.Sprintf("%s(): argument '%s'", method, name)
}

// typeError is a TypeError with a message of its own.
func typeError(format string, args ...any) error {
	return &Error{Name: "TypeError", Err: fmt.Errorf(format, args...)}
}

// mustBe is the TypeError of a value of the wrong type, worded as CPython
// for an argument ("f(): argument 'x' must be str, not int") and with the
// path first for a value inside one (`configs[0]["uid"]: must be int, not str`).
func mustBe(path, want string, v any) error {
	if strings.HasSuffix(path, "'") {
		return typeError("%s must be %s, not %s", path, want, wiremsg.PyTypeName(v))
	}
	return argError("TypeError", path, "must be %s, not %s", want, wiremsg.PyTypeName(v))
}

// floatValue reads a float or None (given is false for None); an int or
// a Decimal is taken as Python's float() would.
func floatValue(path string, v any) (f float64, given bool, err error) {
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return x, true, nil
	case int64:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	case decimal.Decimal:
		f, _ := x.Float64()
		return f, true, nil
	}
	return 0, false, mustBe(path, "float or None", v)
}

// uuidValue reads a kernel or session id as upstream's UUID(raw) does
// (dashed or 32 hex digits) and returns the dashed form.
func uuidValue(path string, v any) (string, error) {
	if u, ok := v.(wiremsg.UUID); ok {
		return u.String(), nil
	}
	s, err := strValue(path, v)
	if err != nil {
		return "", err
	}
	u, err := wiremsg.ParseUUID(s)
	if err != nil {
		return "", argError("ValueError", path, "badly formed UUID string %q", s)
	}
	return u.String(), nil
}

// sessionKernelArgs reads the (session_id, kernel_id) pair that
// restart_kernel and trigger_batch_execution start with.
func sessionKernelArgs(method string, args []any) (sessionID, kernelID string, err error) {
	if sessionID, err = uuidValue(argPath(method, "session_id"), args[0]); err != nil {
		return "", "", err
	}
	if kernelID, err = uuidValue(argPath(method, "kernel_id"), args[1]); err != nil {
		return "", "", err
	}
	return sessionID, kernelID, nil
}

// optionalDict reads a dict or None (an empty dict).
func optionalDict(path string, v any) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	return plainMap(path, v)
}

// argError builds a Python-style argument error naming the argument path.
func argError(pyName, path, format string, args ...any) error {
	return &Error{Name: pyName, Err: fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))}
}

// fieldReader reads keys of one decoded dict, naming each failure by path.
type fieldReader struct {
	path string
	m    wiremsg.Map
}

func newFieldReader(path string, v any) (*fieldReader, error) {
	m, ok := v.(wiremsg.Map)
	if !ok {
		return nil, argError("TypeError", path, "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	return &fieldReader{path: path, m: m}, nil
}

func (r *fieldReader) sub(key string) string { return fmt.Sprintf("%s[%q]", r.path, key) }

// get returns the value and whether it is present and not None.
func (r *fieldReader) get(key string) (any, bool) {
	v, ok := r.m[key]
	return v, ok && v != nil
}

func (r *fieldReader) required(key string) (any, error) {
	v, ok := r.m[key]
	if !ok {
		return nil, argError("KeyError", r.path, "missing required key %q", key)
	}
	return v, nil
}

func (r *fieldReader) str(key string) (string, error) {
	v, ok := r.get(key)
	if !ok {
		return "", nil
	}
	return strValue(r.sub(key), v)
}

// strValue reads a str (a UUID, SlotName or path is one too, as the
// manager's pickles make them).
func strValue(path string, v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case wiremsg.UUID:
		return s.String(), nil
	case wiremsg.SlotName:
		return string(s), nil
	case wiremsg.PurePosixPath:
		return string(s), nil
	case wiremsg.PosixPath:
		return string(s), nil
	}
	return "", mustBe(path, "str", v)
}

// intValue reads an int (a BinarySize is one).
func intValue(path string, v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case uint64:
		if n > math.MaxInt64 {
			return 0, argError("ValueError", path, "%d is out of range", n)
		}
		return int64(n), nil
	case wiremsg.BinarySize:
		return int64(n), nil
	}
	return 0, mustBe(path, "int", v)
}

func (r *fieldReader) int(key string, def int64) (int64, error) {
	v, ok := r.get(key)
	if !ok {
		return def, nil
	}
	return intValue(r.sub(key), v)
}

func (r *fieldReader) boolean(key string) (bool, error) {
	v, ok := r.get(key)
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, argError("TypeError", r.sub(key), "must be bool, not %s", wiremsg.PyTypeName(v))
	}
	return b, nil
}

func (r *fieldReader) strMap(key string) (map[string]string, error) {
	out := map[string]string{}
	v, ok := r.get(key)
	if !ok {
		return out, nil
	}
	m, isMap := v.(wiremsg.Map)
	if !isMap {
		return nil, argError("TypeError", r.sub(key), "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	for k, item := range m {
		name, err := strValue(r.sub(key)+" key", k)
		if err != nil {
			return nil, err
		}
		if item == nil {
			continue
		}
		s, err := strValue(fmt.Sprintf("%s[%q]", r.sub(key), name), item)
		if err != nil {
			return nil, err
		}
		out[name] = s
	}
	return out, nil
}

func (r *fieldReader) anyMap(key string) (map[string]any, error) {
	v, ok := r.get(key)
	if !ok {
		return nil, nil
	}
	return plainMap(r.sub(key), v)
}

// plainMap converts a decoded dict with str keys into map[string]any.
func plainMap(path string, v any) (map[string]any, error) {
	m, ok := v.(wiremsg.Map)
	if !ok {
		return nil, argError("TypeError", path, "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	out := make(map[string]any, len(m))
	for k, item := range m {
		name, err := strValue(path+" key", k)
		if err != nil {
			return nil, err
		}
		out[name] = item
	}
	return out, nil
}

func (r *fieldReader) list(key string) ([]any, error) {
	v, ok := r.get(key)
	if !ok {
		return nil, nil
	}
	l, isList := v.([]any)
	if !isList {
		return nil, argError("TypeError", r.sub(key), "must be a list, not %s", wiremsg.PyTypeName(v))
	}
	return l, nil
}

func (r *fieldReader) intList(key string) ([]int, error) {
	l, err := r.list(key)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(l))
	for i, item := range l {
		n, err := intValue(fmt.Sprintf("%s[%d]", r.sub(key), i), item)
		if err != nil {
			return nil, err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, argError("ValueError", fmt.Sprintf("%s[%d]", r.sub(key), i), "%d is out of range", n)
		}
		out = append(out, int(n))
	}
	return out, nil
}

func (r *fieldReader) strList(key string) ([]string, error) {
	l, err := r.list(key)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(l))
	for i, item := range l {
		s, err := strValue(fmt.Sprintf("%s[%d]", r.sub(key), i), item)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// enumValue reads an enum that arrives as a pickled member (ext 6) or, from
// older or JSON-speaking callers, as its plain value. CPython 3.11 pickles
// members by name; a name maps to the value by lower-casing and turning
// "_" into "-", which holds for AutoPullBehavior, SessionTypes and
// ClusterMode.
func enumValue(path string, v any, class string, allowed ...string) (string, error) {
	var s string
	switch e := v.(type) {
	case wiremsg.Enum:
		if e.Class != class {
			return "", argError("TypeError", path, "must be %s, not %s.%s", class, e.Module, e.Class)
		}
		if value, ok := e.Value.(string); ok {
			s = value
		} else {
			s = strings.ReplaceAll(strings.ToLower(e.Name), "_", "-")
		}
	case string:
		s = e
	default:
		return "", argError("TypeError", path, "must be %s or str, not %s", class, wiremsg.PyTypeName(v))
	}
	if len(allowed) > 0 {
		for _, a := range allowed {
			if s == a {
				return s, nil
			}
		}
		return "", argError("ValueError", path, "%q is not a valid %s (want one of %s)", s, class, strings.Join(allowed, ", "))
	}
	return s, nil
}

func (r *fieldReader) enum(key, class, def string, allowed ...string) (string, error) {
	v, ok := r.get(key)
	if !ok {
		return def, nil
	}
	return enumValue(r.sub(key), v, class, allowed...)
}
