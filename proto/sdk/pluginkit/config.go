package pluginkit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// ParseKeys calls set for every key of raw that is in known, in sorted key
// order, and collects every problem so that an operator fixes the whole
// configuration at once: an error from set, or "unknown key (known: …)"
// for a key not in known (listed in the order given). It returns nil or an
// *sdk.ConfigError.
func ParseKeys(raw map[string]any, known []string, set func(key string, value any) error) error {
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var problems []sdk.ConfigProblem
	for _, key := range keys {
		var err error
		if slices.Contains(known, key) {
			err = set(key, raw[key])
		} else {
			err = UnknownKey(known)
		}
		if err != nil {
			problems = append(problems, sdk.ConfigProblem{Key: key, Reason: err.Error()})
		}
	}
	if len(problems) > 0 {
		return &sdk.ConfigError{Problems: problems}
	}
	return nil
}

// UnknownKey is the problem reported for a key not in known.
func UnknownKey(known []string) error {
	return fmt.Errorf("unknown key (known: %s)", strings.Join(known, ", "))
}

// NonEmptyString takes a string that is not blank and returns it trimmed.
func NonEmptyString(value any) (string, error) {
	s, ok := value.(string)
	if !ok {
		return "", fmt.Errorf("must be a string, got %T", value)
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("must not be empty")
	}
	return strings.TrimSpace(s), nil
}

// ExistingDir takes the path of an existing directory. A relative path is
// resolved against the working directory, which the agent sets to
// agent.toml's directory; the absolute path is returned.
func ExistingDir(value any) (string, error) { return existingPath(value, true) }

// ExistingFile is ExistingDir for a regular file.
func ExistingFile(value any) (string, error) { return existingPath(value, false) }

func existingPath(value any, wantDir bool) (string, error) {
	s, err := NonEmptyString(value)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("cannot resolve %q: %w", s, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("cannot use %q: %w", s, err)
	}
	if wantDir && !info.IsDir() {
		return "", fmt.Errorf("%q is not a directory", abs)
	}
	if !wantDir && !info.Mode().IsRegular() {
		return "", fmt.Errorf("%q is not a regular file", abs)
	}
	return abs, nil
}

// StringList takes a list of non-empty strings and returns them trimmed.
func StringList(value any) ([]string, error) {
	if _, ok := value.(string); ok {
		return nil, fmt.Errorf("must be a list of strings, got a string")
	}
	if _, ok := value.([]any); !ok {
		return nil, fmt.Errorf("must be a list of strings, got %T", value)
	}
	return stringItems(value.([]any))
}

// StringListOrCSV takes a list of strings or, as upstream's device_mask,
// one comma-separated string; blank items of the string are skipped.
func StringListOrCSV(value any) ([]string, error) {
	switch v := value.(type) {
	case string:
		var items []string
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return items, nil
	case []any:
		return stringItems(v)
	default:
		return nil, fmt.Errorf("must be a list of strings or a comma-separated string, got %T", value)
	}
}

func stringItems(list []any) ([]string, error) {
	var items []string
	for i, raw := range list {
		s, ok := raw.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("item %d must be a non-empty string, got %v", i, raw)
		}
		items = append(items, strings.TrimSpace(s))
	}
	return items, nil
}

// Bool takes a JSON boolean or, as etcd stores it, "true"/"false".
func Bool(value any) (bool, error) {
	switch v := value.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("must be true or false, got %q", v)
		}
		return b, nil
	default:
		return false, fmt.Errorf("must be true or false, got %T", value)
	}
}

// Number takes a JSON number or a numeric string (etcd stores strings).
func Number(value any) (decimal.Decimal, error) {
	switch v := value.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return decimal.Zero, fmt.Errorf("must be a finite number")
		}
		return decimal.NewFromFloat(v), nil
	case string:
		d, err := decimal.NewFromString(strings.TrimSpace(v))
		if err != nil {
			return decimal.Zero, fmt.Errorf("must be a number, got %q", v)
		}
		return d, nil
	default:
		return decimal.Zero, fmt.Errorf("must be a number, got %T", value)
	}
}

// Bounds of Duration.
const (
	MinDuration = 10 * time.Millisecond
	MaxDuration = 24 * time.Hour
)

// Duration takes a Go duration or a number of seconds, from MinDuration to
// MaxDuration. example ("30s") is shown in the error for an unreadable
// string.
func Duration(value any, example string) (time.Duration, error) {
	switch v := value.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			secs, numErr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if numErr != nil {
				return 0, fmt.Errorf("must be a duration like %q or a number of seconds, got %q", example, v)
			}
			return secondsToDuration(secs)
		}
		if d < MinDuration || d > MaxDuration {
			return 0, fmt.Errorf("must be from 10ms to 24h, got %s", d)
		}
		return d, nil
	case float64:
		return secondsToDuration(v)
	default:
		return 0, fmt.Errorf("must be a duration string or a number of seconds, got %T", value)
	}
}

func secondsToDuration(secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || secs < MinDuration.Seconds() || secs > MaxDuration.Seconds() {
		return 0, fmt.Errorf("must be from 10ms to 24h, got %v seconds", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
