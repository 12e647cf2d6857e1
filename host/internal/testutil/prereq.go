package testutil

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// InCI says whether the tests run under CI (CI set, as CI systems and
// .ci/run's callers do), where a missing prerequisite is a failure: the CI
// machine installs everything the tests need.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Need stops tb for a missing prerequisite: it skips outside CI and fails
// under CI, so a broken CI image cannot pass by skipping.
func Need(tb testing.TB, msg string) {
	tb.Helper()
	if InCI() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// RequireTool returns the path of program name on PATH, or stops tb with
// Need when it is missing; hint says how to install it.
func RequireTool(tb testing.TB, name, hint string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Need(tb, name+" is not installed ("+hint+")")
	}
	return path
}

// FreePort is a TCP port on host ("127.0.0.1", or "0.0.0.0" for a port
// free on every interface) that nothing listens on now. Another process
// may take it before the caller binds it; tests accept that small race
// where the code under test must be given a port number.
func FreePort(tb testing.TB, host string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond until it holds, and fails tb naming what when it
// still does not after timeout. The timeout is a bound for a hung test,
// never a measurement.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	EventuallyOr(tb, timeout, what, cond, nil)
}

// EventuallyOr is Eventually whose failure also says what onTimeout
// returns (an agent's log, the last error), read only once the wait has
// failed; onTimeout may also release what the test holds before the
// failure ends it. A nil onTimeout adds nothing.
func EventuallyOr(tb testing.TB, timeout time.Duration, what string, cond func() bool, onTimeout func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if onTimeout == nil {
				tb.Fatalf("timed out after %v waiting for %s", timeout, what)
			}
			tb.Fatalf("timed out after %v waiting for %s; %s", timeout, what, onTimeout())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
