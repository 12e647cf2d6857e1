package pluginkit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

func TestParseKeys(t *testing.T) {
	known := []string{"b-key", "a-key"}
	tests := []struct {
		description string
		raw         map[string]any
		wantSet     []string
		wantErr     []sdk.ConfigProblem
	}{
		{"nothing to read", nil, nil, nil},
		{"known keys in sorted order", map[string]any{"b-key": 1.0, "a-key": 2.0}, []string{"a-key", "b-key"}, nil},
		{"unknown key lists the known ones in the order given", map[string]any{"c-key": 1.0},
			nil, []sdk.ConfigProblem{{Key: "c-key", Reason: "unknown key (known: b-key, a-key)"}}},
		{"every problem at once", map[string]any{"a-key": "bad", "z": true, "b-key": 3.0},
			[]string{"a-key", "b-key"}, []sdk.ConfigProblem{
				{Key: "a-key", Reason: "a-key is bad"},
				{Key: "z", Reason: "unknown key (known: b-key, a-key)"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			var set []string
			err := ParseKeys(tc.raw, known, func(key string, value any) error {
				set = append(set, key)
				if value == "bad" {
					return errors.New(key + " is bad")
				}
				return nil
			})
			if !reflect.DeepEqual(set, tc.wantSet) {
				t.Fatalf("set %v, want %v", set, tc.wantSet)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, tc.wantErr) {
				t.Fatalf("error %#v, want problems %v", err, tc.wantErr)
			}
		})
	}
}

func TestValueReaders(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(mustGetwd(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		description string
		read        func(any) (any, error)
		in          any
		want        any
		wantErr     string
	}{
		{"string trimmed", wrap(NonEmptyString), "  x ", "x", ""},
		{"string blank", wrap(NonEmptyString), "  ", nil, "must not be empty"},
		{"string wrong type", wrap(NonEmptyString), 1.0, nil, "must be a string, got float64"},
		{"dir absolute", wrap(ExistingDir), dir, dir, ""},
		{"dir relative resolved", wrap(ExistingDir), rel, dir, ""},
		{"dir missing", wrap(ExistingDir), filepath.Join(dir, "nope"), nil, "cannot use"},
		{"dir is a file", wrap(ExistingDir), file, nil, "is not a directory"},
		{"file", wrap(ExistingFile), file, file, ""},
		{"file is a dir", wrap(ExistingFile), dir, nil, "is not a regular file"},
		{"list", wrap(StringList), []any{" a", "b "}, []string{"a", "b"}, ""},
		{"list empty item", wrap(StringList), []any{"a", " "}, nil, "item 1 must be a non-empty string"},
		{"list not a string", wrap(StringList), "a,b", nil, "must be a list of strings, got a string"},
		{"list wrong type", wrap(StringList), 1.0, nil, "must be a list of strings, got float64"},
		{"csv string", wrap(StringListOrCSV), " a, ,b ", []string{"a", "b"}, ""},
		{"csv list", wrap(StringListOrCSV), []any{"a"}, []string{"a"}, ""},
		{"csv list bad item", wrap(StringListOrCSV), []any{1.0}, nil, "item 0 must be a non-empty string, got 1"},
		{"csv wrong type", wrap(StringListOrCSV), true, nil, "must be a list of strings or a comma-separated string, got bool"},
		{"bool", wrap(Bool), true, true, ""},
		{"bool from string", wrap(Bool), " false ", false, ""},
		{"bool bad string", wrap(Bool), "yes", nil, `must be true or false, got "yes"`},
		{"bool wrong type", wrap(Bool), 1.0, nil, "must be true or false, got float64"},
		{"number", wrap(Number), 1.5, decimal.RequireFromString("1.5"), ""},
		{"number from string", wrap(Number), " 2.25 ", decimal.RequireFromString("2.25"), ""},
		{"number bad string", wrap(Number), "x", nil, `must be a number, got "x"`},
		{"number wrong type", wrap(Number), true, nil, "must be a number, got bool"},
		{"duration string", durationReader, "1m", time.Minute, ""},
		{"duration seconds", durationReader, 0.5, 500 * time.Millisecond, ""},
		{"duration seconds string", durationReader, "2", 2 * time.Second, ""},
		{"duration too short", durationReader, "1ms", nil, "must be from 10ms to 24h, got 1ms"},
		{"duration too long", durationReader, 1e9, nil, "must be from 10ms to 24h, got 1e+09 seconds"},
		{"duration unreadable shows the example", durationReader, "soon", nil, `must be a duration like "30s" or a number of seconds, got "soon"`},
		{"duration wrong type", durationReader, true, nil, "must be a duration string or a number of seconds, got bool"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := tc.read(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := tc.want.(decimal.Decimal); ok {
				if !d.Equal(got.(decimal.Decimal)) {
					t.Fatalf("got %v, want %v", got, d)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func wrap[T any](f func(any) (T, error)) func(any) (any, error) {
	return func(v any) (any, error) { return f(v) }
}

func durationReader(v any) (any, error) { return Duration(v, "30s") }

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
