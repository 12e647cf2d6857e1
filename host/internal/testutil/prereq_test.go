package testutil

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInCI(t *testing.T) {
	cases := []struct {
		value string
		want  bool
	}{{"", false}, {"false", false}, {"0", false}, {"true", true}, {"1", true}}
	for _, tc := range cases {
		t.Setenv("CI", tc.value)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.value, got, tc.want)
		}
	}
}

func TestFreePortCanBeBound(t *testing.T) {
	port := FreePort(t, "127.0.0.1")
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("the free port %d cannot be bound: %v", port, err)
	}
	_ = l.Close()
}

func TestRequireToolFindsAProgram(t *testing.T) {
	if path := RequireTool(t, "sh", "a POSIX shell"); path == "" {
		t.Fatal("no path for sh")
	}
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	Eventually(t, time.Minute, "the third call", func() bool { return calls.Add(1) == 3 })
	if n := calls.Load(); n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

// fatalRecorder keeps a Fatalf's message and ends the calling goroutine
// as testing.T does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyOrSaysWhatOnTimeoutReturns(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		EventuallyOr(rec, 20*time.Millisecond, "never", func() bool { return false }, func() string { return "logs:\nthe log" })
	}()
	<-done
	if !strings.HasPrefix(rec.msg, "timed out after 20ms waiting for never") || !strings.HasSuffix(rec.msg, "; logs:\nthe log") {
		t.Fatalf("failure %q, want the timeout and what onTimeout returned", rec.msg)
	}
}
