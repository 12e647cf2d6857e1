package config

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// decoder carries what every section reader needs: where problems and
// warnings go, and how to resolve relative paths.
type decoder struct {
	problems []*Problem
	warnings []Warning
	// fileDir resolves relative paths written in the file.
	fileDir string
	// relativeKeys are upstream keys whose file value was a relative path.
	relativeKeys []string
	env          Env
}

func (d *decoder) fail(key, format string, args ...any) {
	d.problems = append(d.problems, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) failEnv(envName, key, format string, args ...any) {
	d.problems = append(d.problems, &Problem{Key: key, Env: envName, Message: fmt.Sprintf(format, args...)})
}

// resolvePath makes a path absolute: "~" is the home dir, and a relative path
// is joined to base (the config file's dir for file values, the working dir
// for defaults and environment values).
func (d *decoder) resolvePath(path, base string) (string, error) {
	if path == "" {
		return "", nil
	}
	if path == "~" || strings.HasPrefix(path, "~/") {
		if d.env.HomeDir == "" {
			return "", fmt.Errorf("cannot expand %q: home directory unknown", path)
		}
		path = filepath.Join(d.env.HomeDir, path[1:])
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	return filepath.Clean(path), nil
}

// table reads one TOML table, remembering which keys were consumed so the
// rest can be reported.
type table struct {
	d      *decoder
	path   string
	values map[string]any
	used   map[string]bool
	// ignored are upstream keys this agent accepts without honouring; the
	// value, when not nil, says whether a setting is inert (upstream's
	// default, or disabled), which earns no warning.
	ignored map[string]func(any) bool
}

func newTable(d *decoder, path string, values map[string]any) *table {
	if values == nil {
		values = map[string]any{}
	}
	return &table{d: d, path: path, values: values, used: map[string]bool{}, ignored: map[string]func(any) bool{}}
}

func (t *table) keyPath(key string) string {
	if t.path == "" {
		return key
	}
	return t.path + "." + key
}

// lookup finds key under its kebab-case name, its snake_case name (pydantic
// accepts field names too) or one of its aliases; every spelling present is
// marked used. It returns the spelling that was found, for messages.
func (t *table) lookup(key string, aliases ...string) (value any, written string, found bool) {
	for _, name := range append([]string{key}, aliases...) {
		for _, spelling := range []string{name, strings.ReplaceAll(name, "-", "_")} {
			v, ok := t.values[spelling]
			if !ok {
				continue
			}
			t.used[spelling] = true
			if !found {
				value, written, found = v, spelling, true
			}
		}
	}
	return value, written, found
}

func (t *table) has(key string) bool {
	_, _, found := t.lookup(key)
	return found
}

func (t *table) fail(written, format string, args ...any) {
	t.d.fail(t.keyPath(written), format, args...)
}

// child returns the sub-table under key, or an empty one if it is absent.
// A non-table value is a problem.
func (t *table) child(key string, aliases ...string) *table {
	raw, written, found := t.lookup(key, aliases...)
	if !found {
		return newTable(t.d, t.keyPath(key), nil)
	}
	values, ok := raw.(map[string]any)
	if !ok {
		t.fail(written, "must be a table, got %s", typeName(raw))
		return newTable(t.d, t.keyPath(written), nil)
	}
	return newTable(t.d, t.keyPath(written), values)
}

// ignore declares upstream keys that are accepted but have no effect here.
// A value that is false, or a table with enabled = false, earns no warning:
// nothing is lost by ignoring what is switched off.
func (t *table) ignore(keys ...string) {
	for _, key := range keys {
		t.ignoreUnless(key, isDisabled)
	}
}

// ignoreDefault declares an ignored key whose upstream default (or a
// disabled value) earns no warning.
func (t *table) ignoreDefault(key string, upstreamDefault any) {
	t.ignoreUnless(key, func(v any) bool { return isDisabled(v) || sameValue(v, upstreamDefault) })
}

func (t *table) ignoreUnless(key string, inert func(any) bool) {
	t.ignored[key] = inert
	t.ignored[strings.ReplaceAll(key, "-", "_")] = inert
}

// accept consumes keys that only tune upstream's Python runtime (its event
// loop, per-package log levels, console colours): they have no counterpart
// here, so there is nothing to honour or warn about.
func (t *table) accept(keys ...string) {
	for _, key := range keys {
		t.lookup(key)
	}
}

// isDisabled says whether v switches a feature off: false, or a table
// whose enabled/enable is false.
func isDisabled(v any) bool {
	switch v := v.(type) {
	case bool:
		return !v
	case map[string]any:
		for _, key := range []string{"enabled", "enable"} {
			if on, ok := v[key].(bool); ok {
				return !on
			}
		}
	}
	return false
}

// sameValue compares a TOML value with a Go default (int for integers).
func sameValue(v, upstreamDefault any) bool {
	if n, ok := upstreamDefault.(int); ok {
		upstreamDefault = int64(n)
	}
	if s, ok := v.(string); ok {
		if ds, ok := upstreamDefault.(string); ok {
			return strings.EqualFold(s, ds)
		}
	}
	return fmt.Sprint(v) == fmt.Sprint(upstreamDefault)
}

// finish reports every key that no reader consumed.
func (t *table) finish() {
	for _, key := range sortedKeys(t.values) {
		if t.used[key] {
			continue
		}
		kind := WarnUnknownKey
		if inert, ignored := t.ignored[key]; ignored {
			if inert != nil && inert(t.values[key]) {
				continue
			}
			kind = WarnIgnoredKey
		}
		t.d.warnings = append(t.d.warnings, Warning{Kind: kind, Key: t.keyPath(key)})
	}
}

// str reads a string and reports whether one was read.
func (t *table) str(key string, dst *string, aliases ...string) (read bool) {
	raw, written, found := t.lookup(key, aliases...)
	if !found {
		return false
	}
	s, ok := raw.(string)
	if !ok {
		t.fail(written, "must be a string, got %s", typeName(raw))
		return false
	}
	*dst = s
	return true
}

func (t *table) boolean(key string, dst *bool) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	b, err := toBool(raw)
	if err != nil {
		t.fail(written, "%v", err)
		return
	}
	*dst = b
}

func (t *table) integer(key string, dst *int, minimum, maximum int) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	n, err := toInt(raw)
	if err != nil {
		t.fail(written, "%v", err)
		return
	}
	if n < minimum || n > maximum {
		t.fail(written, "%d is not between %d and %d", n, minimum, maximum)
		return
	}
	*dst = n
}

// seconds reads a number of seconds (upstream's float fields).
func (t *table) seconds(key string, dst *time.Duration, allowZero bool) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	secs, err := toSeconds(raw)
	if err != nil {
		t.fail(written, "%v", err)
		return
	}
	if secs < 0 || (secs == 0 && !allowZero) {
		t.fail(written, "%v seconds must be %s", secs, map[bool]string{true: ">= 0", false: "> 0"}[allowZero])
		return
	}
	if secs > (100 * 365 * 24 * time.Hour).Seconds() {
		t.fail(written, "%v seconds is too long", secs)
		return
	}
	*dst = time.Duration(math.Round(secs * float64(time.Second)))
}

// duration reads a Go duration string ("30s", "1m30s") or a number of seconds.
func (t *table) duration(key string, dst *time.Duration) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	if s, ok := raw.(string); ok {
		if parsed, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			if parsed <= 0 {
				t.fail(written, "%q must be positive", s)
				return
			}
			*dst = parsed
			return
		}
	}
	secs, err := toSeconds(raw)
	if err != nil {
		t.fail(written, "must be a duration like \"30s\" or a number of seconds, got %s", describe(raw))
		return
	}
	if secs <= 0 || secs > (100*365*24*time.Hour).Seconds() {
		t.fail(written, "%v seconds must be positive and sane", secs)
		return
	}
	*dst = time.Duration(math.Round(secs * float64(time.Second)))
}

func (t *table) hostPort(key string, dst *HostPort, aliases ...string) (found bool) {
	raw, written, found := t.lookup(key, aliases...)
	if !found {
		return false
	}
	hp, err := ParseHostPort(raw)
	if err != nil {
		t.fail(written, "%v", err)
		return true
	}
	*dst = hp
	return true
}

// byteSize reads a non-negative binary size written as a string or a number of bytes.
func (t *table) byteSize(key string, dst *ByteSize) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	size, err := byteSizeValue(raw)
	if err != nil {
		t.fail(written, "%v", err)
		return
	}
	*dst = size
}

func byteSizeValue(raw any) (ByteSize, error) {
	var size ByteSize
	switch v := raw.(type) {
	case string:
		parsed, err := ParseByteSize(v)
		if err != nil {
			return 0, err
		}
		size = parsed
	case int64:
		size = ByteSize(v)
	default:
		return 0, fmt.Errorf("must be a binary size like \"1G\" or a number of bytes, got %s", typeName(raw))
	}
	if size < 0 {
		return 0, fmt.Errorf("binary size %s must not be negative", describe(raw))
	}
	return size, nil
}

// stringList reads an array of strings; it reports whether the key was
// present, so callers can tell "absent" from "empty".
func (t *table) stringList(key string, dst *[]string) (present bool) {
	raw, written, found := t.lookup(key)
	if !found {
		return false
	}
	items, ok := raw.([]any)
	if !ok {
		t.fail(written, "must be an array of strings, got %s", typeName(raw))
		return true
	}
	list := make([]string, 0, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			t.fail(fmt.Sprintf("%s[%d]", written, i), "must be a string, got %s", typeName(item))
			return true
		}
		list = append(list, s)
	}
	*dst = list
	return true
}

// stringMap reads a table of strings.
func (t *table) stringMap(key string, dst *map[string]string) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	values, ok := raw.(map[string]any)
	if !ok {
		t.fail(written, "must be a table of strings, got %s", typeName(raw))
		return
	}
	result := make(map[string]string, len(values))
	for _, name := range sortedKeys(values) {
		value := values[name]
		s, ok := value.(string)
		if !ok {
			t.fail(written+"."+name, "must be a string, got %s", typeName(value))
			continue
		}
		result[name] = s
	}
	*dst = result
}

// path reads a filesystem path, resolving a relative one against the config
// file's directory.
func (t *table) filePath(key string, dst *string) {
	var raw string
	if !t.str(key, &raw) {
		return
	}
	resolved, err := t.d.resolvePath(raw, t.d.fileDir)
	_, written, _ := t.lookup(key)
	if err != nil {
		t.fail(written, "%v", err)
		return
	}
	if isRelative(raw) && !oursOnly[t.keyPath(key)] {
		t.d.relativeKeys = append(t.d.relativeKeys, t.keyPath(written))
	}
	*dst = resolved // "" unsets an optional path
}

// oursOnly are path keys upstream never had, so no file written for it
// meant them relative to its working directory.
var oursOnly = map[string]bool{
	"etcd.data-dir": true, "etcd.embedded-executable": true, "agent.plugin-runtime-dir": true, "agent.kernel-runner-path": true,
}

func isRelative(path string) bool {
	return path != "" && path != "~" && !strings.HasPrefix(path, "~/") && !filepath.IsAbs(path)
}

// enumValue reads one of a fixed set of strings; normalize maps spellings
// (such as case) onto the canonical values.
func enumValue[T ~string](t *table, key string, dst *T, normalize func(string) string, allowed ...T) {
	var raw string
	if !t.str(key, &raw) {
		return
	}
	_, written, _ := t.lookup(key)
	if v, ok := parseEnum(raw, normalize, allowed...); ok {
		*dst = v
		return
	}
	t.fail(written, "%q is not one of %s", raw, joinEnum(allowed))
}

func parseEnum[T ~string](raw string, normalize func(string) string, allowed ...T) (T, bool) {
	candidate := raw
	if normalize != nil {
		candidate = normalize(raw)
	}
	for _, v := range allowed {
		if string(v) == candidate {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func joinEnum[T ~string](allowed []T) string {
	names := make([]string, len(allowed))
	for i, v := range allowed {
		names[i] = string(v)
	}
	return strings.Join(names, "|")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
