package etcdstore

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

// The expected values were produced by CPython 3's urllib.parse.quote(s,
// safe="") and unquote(s), the functions upstream's common/etcd.py uses.
func TestQuoteMatchesPython(t *testing.T) {
	cases := []struct {
		description string
		in, want    string
	}{
		{"slash and space are escaped", "a/b c", "a%2Fb%20c"},
		{"non-ASCII is escaped as UTF-8 with upper-case hex", "ü", "%C3%BC"},
		{"unreserved punctuation stays", "~._-", "~._-"},
		{"empty stays empty", "", ""},
		{"a dotted plugin key stays", "cuda.device", "cuda.device"},
		{"a percent sign is escaped", "a%b", "a%25b"},
		{"several separators", "key with spaces/and/slashes", "key%20with%20spaces%2Fand%2Fslashes"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := Quote(tc.in); got != tc.want {
				t.Errorf("Quote(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestUnquoteMatchesPython(t *testing.T) {
	cases := []struct {
		description string
		in, want    string
	}{
		{"escaped slash", "a%2Fb", "a/b"},
		{"a three-byte character", "%E2%82%AC", "€"},
		{"truncated sequence is one replacement; bad escapes stay", "%e2%82x%FF%zz%4", "\uFFFDx\uFFFD%zz%4"},
		{"surrogate half is three replacements", "%ed%a0%80", "\uFFFD\uFFFD\uFFFD"},
		{"truncated four-byte sequence is one replacement", "%f0%9f%98", "\uFFFD"},
		{"overlong encoding is two replacements", "%C0%AF", "\uFFFD\uFFFD"},
		{"raw non-ASCII passes, trailing percent stays", "ü%41%", "üA%"},
		{"double percent", "%%41", "%A"},
		{"no escapes", "abc", "abc"},
		{"above U+10FFFF is four replacements", "%F4%90%80%80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"overlong three-byte is three replacements", "%E0%80%AF", "\uFFFD\uFFFD\uFFFD"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := Unquote(tc.in); got != tc.want {
				t.Errorf("Unquote(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMakeDictFromPairsMatchesUpstream(t *testing.T) {
	cases := []struct {
		description string
		prefix      string
		pairs       []Pair
		want        map[string]any
	}{
		{
			description: "upstream's docstring example: a value that is also a parent becomes the empty key",
			prefix:      "myprefix",
			pairs: []Pair{
				{"myprefix/mydata", "abc"}, {"myprefix/mydata/x", "1"},
				{"myprefix/mydata/y", "2"}, {"myprefix/mykey", "def"},
			},
			want: map[string]any{"mydata": map[string]any{"": "abc", "x": "1", "y": "2"}, "mykey": "def"},
		},
		{
			description: "components are unquoted",
			prefix:      "config/plugins/accelerator",
			pairs:       []Pair{{"config/plugins/accelerator/cuda/device%2Fmask", "0,1"}, {"config/plugins/accelerator/my%20plugin/x", "y"}},
			want:        map[string]any{"cuda": map[string]any{"device/mask": "0,1"}, "my plugin": map[string]any{"x": "y"}},
		},
		{
			description: "the key equal to the prefix lands at the empty name",
			prefix:      "volumes",
			pairs:       []Pair{{"volumes", "v"}, {"volumes/_mount", "/mnt"}},
			want:        map[string]any{"": "v", "_mount": "/mnt"},
		},
		{
			description: "a sibling sharing the raw prefix is included, as upstream does",
			prefix:      "config/redis",
			pairs:       []Pair{{"config/redis/addr", "h:1"}, {"config/redis2/addr", "h:2"}},
			want:        map[string]any{"addr": "h:1", "2": map[string]any{"addr": "h:2"}},
		},
		{
			description: "keys outside the prefix are skipped",
			prefix:      "a",
			pairs:       []Pair{{"b/x", "1"}, {"a/x", "2"}},
			want:        map[string]any{"x": "2"},
		},
		{
			description: "a later leaf replaces a table of the same unquoted name",
			prefix:      "p",
			pairs:       []Pair{{"p/x%41/y", "1"}, {"p/xA", "2"}},
			want:        map[string]any{"xA": "2"},
		},
		{
			description: "a double slash makes an empty component",
			prefix:      "p",
			pairs:       []Pair{{"p/a//b", "1"}},
			want:        map[string]any{"a": map[string]any{"": map[string]any{"b": "1"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got := MakeDictFromPairs(tc.prefix, tc.pairs)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestFlattenRoundTrip(t *testing.T) {
	cases := []struct {
		description string
		tree        map[string]any
		wantFlat    map[string]string
	}{
		{
			description: "nested keys are quoted and joined",
			tree:        map[string]any{"a b": map[string]any{"c/d": "1"}, "e": "2"},
			wantFlat:    map[string]string{"pre/a%20b/c%2Fd": "1", "pre/e": "2"},
		},
		{
			description: "the empty key names the parent itself",
			tree:        map[string]any{"x": map[string]any{"": "self", "y": "z"}},
			wantFlat:    map[string]string{"pre/x": "self", "pre/x/y": "z"},
		},
		{
			description: "non-string leaves print as Python's str()",
			tree:        map[string]any{"on": true, "off": false, "n": 7},
			wantFlat:    map[string]string{"pre/on": "True", "pre/off": "False", "pre/n": "7"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			flat := Flatten("pre", tc.tree)
			if !reflect.DeepEqual(flat, tc.wantFlat) {
				t.Fatalf("Flatten = %#v, want %#v", flat, tc.wantFlat)
			}
			back := MakeDictFromPairs("pre", sortedPairs(flat))
			want := stringLeaves(tc.tree)
			if !reflect.DeepEqual(back, want) {
				t.Errorf("round trip = %#v, want %#v", back, want)
			}
		})
	}
}

func sortedPairs(flat map[string]string) []Pair {
	pairs := make([]Pair, 0, len(flat))
	for k, v := range flat {
		pairs = append(pairs, Pair{k, v})
	}
	for i := range pairs {
		for j := i + 1; j < len(pairs); j++ {
			if pairs[j].Key < pairs[i].Key {
				pairs[i], pairs[j] = pairs[j], pairs[i]
			}
		}
	}
	return pairs
}

func stringLeaves(tree map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range tree {
		if sub, ok := v.(map[string]any); ok {
			out[k] = stringLeaves(sub)
		} else {
			out[k] = leafString(v)
		}
	}
	return out
}

func FuzzUnquote(f *testing.F) {
	for _, seed := range []string{"", "a%2Fb", "%e2%82x%FF%zz%4", "%ed%a0%80", "ü%41%", "%F4%90%80%80", "%"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Unquote(s)
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Unquote(%q) = %q is not valid UTF-8", s, got)
		}
		if utf8.ValidString(s) {
			if back := Unquote(Quote(s)); back != s {
				t.Fatalf("Unquote(Quote(%q)) = %q", s, back)
			}
		}
		for i := 0; i < len(Quote(s)); i++ {
			c := Quote(s)[i]
			if c != '%' && !isUnreserved(c) && !isHex(c) {
				t.Fatalf("Quote(%q) left %q unescaped", s, c)
			}
		}
	})
}

func FuzzMakeDictFromPairs(f *testing.F) {
	f.Add("p", "p/a%2Fb/c", "1", "p/a%2Fb", "2")
	f.Add("", "x//y", "1", "x", "2")
	f.Fuzz(func(t *testing.T, prefix, k1, v1, k2, v2 string) {
		pairs := []Pair{{k1, v1}, {k2, v2}}
		if k2 < k1 {
			pairs[0], pairs[1] = pairs[1], pairs[0]
		}
		dict := MakeDictFromPairs(prefix, pairs)
		// Every leaf must be one of the inputs' values; re-flattening and
		// rebuilding a dict of valid UTF-8 names must be stable.
		var walk func(map[string]any)
		walk = func(m map[string]any) {
			for _, v := range m {
				switch v := v.(type) {
				case map[string]any:
					walk(v)
				case string:
					if v != v1 && v != v2 {
						t.Fatalf("leaf %q is not an input value", v)
					}
				default:
					t.Fatalf("unexpected leaf type %T", v)
				}
			}
		}
		walk(dict)
		if !allNamesValidUTF8(dict) || !canonical(dict) {
			return
		}
		again := MakeDictFromPairs("q", sortedPairs(Flatten("q", dict)))
		if !reflect.DeepEqual(again, dict) {
			t.Fatalf("flatten/rebuild changed %#v into %#v", dict, again)
		}
	})
}

func allNamesValidUTF8(m map[string]any) bool {
	for k, v := range m {
		if !utf8.ValidString(k) {
			return false
		}
		if sub, ok := v.(map[string]any); ok && !allNamesValidUTF8(sub) {
			return false
		}
	}
	return true
}

// canonical says whether a dict survives Flatten unchanged: Flatten cannot
// express an empty table, a table holding only the "" name (it reads back as
// a plain value), or a table under the "" name (it merges into its parent).
func canonical(m map[string]any) bool {
	if _, onlySelf := m[""]; len(m) == 0 || len(m) == 1 && onlySelf {
		return false
	}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && (k == "" || !canonical(sub)) {
			return false
		}
	}
	return true
}
