package testutil

import (
	"net"
	"strconv"
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
