package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func openTestQueue(t *testing.T, dir string, segmentBytes int64) *Queue {
	t.Helper()
	q, err := Open(Options{Dir: dir, SegmentBytes: segmentBytes, MaxBytes: 1 << 20, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func drain(t *testing.T, q *Queue) []string {
	t.Helper()
	var out []string
	for {
		p, ok := q.Peek()
		if !ok {
			return out
		}
		out = append(out, string(p))
		if err := q.Pop(); err != nil {
			t.Fatal(err)
		}
	}
}

func appendAll(t *testing.T, q *Queue, records ...string) {
	t.Helper()
	for _, r := range records {
		if err := q.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
}

func equalStrings(a, b []string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b) && len(a) == len(b)
}

func TestQueueKeepsOrderAcrossReopen(t *testing.T) {
	cases := []struct {
		description  string
		segmentBytes int64
		popBefore    int
		records      []string
	}{
		{"one segment, nothing delivered", 1 << 20, 0, []string{"a", "b", "c"}},
		{"one segment, first two delivered", 1 << 20, 2, []string{"a", "b", "c", "d"}},
		{"a segment per record, some delivered", 10, 3, []string{"r1", "r2", "r3", "r4", "r5"}},
		{"all delivered", 16, 3, []string{"x", "y", "z"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			dir := t.TempDir()
			q := openTestQueue(t, dir, tc.segmentBytes)
			appendAll(t, q, tc.records...)
			for range tc.popBefore {
				if err := q.Pop(); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			reopened := openTestQueue(t, dir, tc.segmentBytes)
			if got, want := reopened.Len(), len(tc.records)-tc.popBefore; got != want {
				t.Fatalf("Len after reopen = %d, want %d", got, want)
			}
			appendAll(t, reopened, "after-reopen")
			want := append(append([]string(nil), tc.records[tc.popBefore:]...), "after-reopen")
			if got := drain(t, reopened); !equalStrings(got, want) {
				t.Errorf("records = %q, want %q", got, want)
			}
			segments, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
			if err != nil {
				t.Fatal(err)
			}
			if len(segments) != 1 {
				t.Errorf("delivered segments not removed: %v", segments)
			}
		})
	}
}

func TestQueueCutsTornTail(t *testing.T) {
	cases := []struct {
		description string
		damage      func(t *testing.T, path string)
	}{
		{"half-written header", func(t *testing.T, path string) { appendBytes(t, path, []byte{5, 0, 0}) }},
		{"payload shorter than its length", func(t *testing.T, path string) {
			frame, _ := EncodeRecord([]byte("torn-record"))
			appendBytes(t, path, frame[:len(frame)-3])
		}},
		{"zeroed blocks after a crash", func(t *testing.T, path string) { appendBytes(t, path, make([]byte, 64)) }},
		{"checksum mismatch in the last record", func(t *testing.T, path string) {
			frame, _ := EncodeRecord([]byte("flipped"))
			frame[len(frame)-1] ^= 0xff
			appendBytes(t, path, frame)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			dir := t.TempDir()
			q := openTestQueue(t, dir, 1<<20)
			appendAll(t, q, "one", "two")
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, filepath.Join(dir, "seg-0000000000000001.log"))
			reopened := openTestQueue(t, dir, 1<<20)
			appendAll(t, reopened, "three")
			if err := reopened.Close(); err != nil {
				t.Fatal(err)
			}
			// A third open proves the appended record landed after the cut.
			again := openTestQueue(t, dir, 1<<20)
			if got, want := drain(t, again), []string{"one", "two", "three"}; !equalStrings(got, want) {
				t.Errorf("records = %q, want %q", got, want)
			}
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestQueueRejectsWhenFull(t *testing.T) {
	q, err := Open(Options{Dir: t.TempDir(), MaxBytes: 3 * (recordHeaderSize + 4), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	appendAll(t, q, "aaaa", "bbbb", "cccc")
	if err := q.Append([]byte("dddd")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append on a full queue = %v, want ErrFull", err)
	}
	if err := q.Pop(); err != nil {
		t.Fatal(err)
	}
	if err := q.Append([]byte("dddd")); err != nil {
		t.Fatalf("Append after Pop: %v", err)
	}
	if got, want := drain(t, q), []string{"bbbb", "cccc", "dddd"}; !equalStrings(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
}

func TestQueueDamagedCursorRedelivers(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20)
	appendAll(t, q, "a", "b")
	if err := q.Pop(); err != nil {
		t.Fatal(err)
	}
	_ = q.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	reopened := openTestQueue(t, dir, 1<<20)
	if got, want := drain(t, reopened), []string{"a", "b"}; !equalStrings(got, want) {
		t.Errorf("records = %q, want %q (at least once)", got, want)
	}
}

func TestEncodeRecordRejects(t *testing.T) {
	cases := []struct {
		description string
		payload     []byte
	}{
		{"empty payload", nil},
		{"payload over the limit", make([]byte, MaxRecordSize+1)},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if _, err := EncodeRecord(tc.payload); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// FuzzDecodeSegment checks that any byte string decodes without panicking,
// and that the records reported valid re-encode to exactly the valid prefix.
func FuzzDecodeSegment(f *testing.F) {
	one, _ := EncodeRecord([]byte("kernel_started"))
	two, _ := EncodeRecord([]byte{0x93, 0x01, 0x02, 0x03})
	f.Add(append(append([]byte(nil), one...), two...))
	f.Add(one[:5])
	f.Add(append(append([]byte(nil), one...), 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		records, validEnd, err := DecodeSegment(data, 0)
		if validEnd < 0 || validEnd > int64(len(data)) {
			t.Fatalf("valid end %d outside 0..%d", validEnd, len(data))
		}
		if (err == nil) != (validEnd == int64(len(data))) {
			t.Fatalf("err %v with valid end %d of %d", err, validEnd, len(data))
		}
		var rebuilt []byte
		for _, r := range records {
			frame, encErr := EncodeRecord(r.Payload)
			if encErr != nil {
				t.Fatalf("decoded record does not re-encode: %v", encErr)
			}
			rebuilt = append(rebuilt, frame...)
			if r.End != int64(len(rebuilt)) {
				t.Fatalf("record end %d, want %d", r.End, len(rebuilt))
			}
		}
		if !bytes.Equal(rebuilt, data[:validEnd]) {
			t.Fatal("re-encoded records differ from the valid prefix")
		}
	})
}
