package runner

import (
	"bytes"
	"testing"
)

func TestSyncSplitter(t *testing.T) {
	marker := []byte("\x1eSabc\x1e")
	cases := []struct {
		name   string
		chunks []string
		want   string // data with each marker shown as |
	}{
		{name: "marker alone", chunks: []string{"\x1eSabc\x1e"}, want: "|"},
		{name: "data around", chunks: []string{"hi\n\x1eSabc\x1emore"}, want: "hi\n|more"},
		{name: "marker split", chunks: []string{"out\x1eS", "ab", "c\x1etail"}, want: "out|tail"},
		{name: "false start", chunks: []string{"a\x1eSab", "X\x1eSabc\x1e"}, want: "a\x1eSabX|"},
		{name: "two markers", chunks: []string{"\x1eSabc\x1e\x1eSabc\x1e"}, want: "||"},
		{name: "held tail flushed", chunks: []string{"end\x1e"}, want: "end\x1e"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			s := newSyncSplitter(marker)
			onData := func(b []byte) { got.Write(b) }
			for _, c := range tc.chunks {
				s.Feed([]byte(c), onData, func() { got.WriteByte('|') })
			}
			s.Flush(onData)
			if got.String() != tc.want {
				t.Fatalf("got %q, want %q", got.String(), tc.want)
			}
		})
	}
}

// FuzzSyncSplitter checks that however output is chunked, the data and
// markers come out as in the unchunked stream.
func FuzzSyncSplitter(f *testing.F) {
	f.Add([]byte("hello\x1eSk\x1eworld"), uint8(3))
	f.Add([]byte("\x1e\x1eSk\x1eSk\x1e"), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		marker := []byte("\x1eSk\x1e")
		render := func(step int) string {
			var out bytes.Buffer
			s := newSyncSplitter(marker)
			onData := func(b []byte) { out.Write(b) }
			onSync := func() { out.WriteString("|") }
			for i := 0; i < len(stream); i += step {
				s.Feed(stream[i:min(i+step, len(stream))], onData, onSync)
			}
			s.Flush(onData)
			return out.String()
		}
		whole := render(len(stream) + 1)
		if got := render(int(chunk%16) + 1); got != whole {
			t.Fatalf("chunked %q, whole %q", got, whole)
		}
		if bytes.IndexByte(stream, '|') < 0 {
			if want := string(bytes.ReplaceAll(stream, marker, []byte("|"))); whole != want {
				t.Fatalf("split %q, want %q", whole, want)
			}
		}
	})
}

func TestParseSyscallLine(t *testing.T) {
	nr, args, ok := parseSyscallLine([]byte("7 0x7fffa9ca6c18 0x1 0xffffffff 0x0 0x0 0x0 0x7ff 0x4bf\n"))
	if !ok || nr != 7 || args[0] != 0x7fffa9ca6c18 || args[1] != 1 {
		t.Fatalf("got %d %x %v", nr, args, ok)
	}
	for _, bad := range []string{"running", "", "x 0x1 0x2", "0 zz 0x1"} {
		if _, _, ok := parseSyscallLine([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if ppid, ok := parentPID([]byte("12 (a) b) c) S 7 12 12 0")); !ok || ppid != 7 {
		t.Fatalf("ppid %d %v", ppid, ok)
	}
}

func TestResolveRuntime(t *testing.T) {
	kind, path, _, err := ResolveRuntime("", "")
	if err != nil || kind != RuntimeShell || path == "" {
		t.Fatalf("default runtime: %s %s %v", kind, path, err)
	}
	kind, _, reason, err := ResolveRuntime("python3.12", "/nonexistent/python3.12")
	if err != nil {
		t.Fatal(err)
	}
	if kind == RuntimeShell && reason == "" {
		t.Fatal("falling back from python to a shell must say why")
	}
}
