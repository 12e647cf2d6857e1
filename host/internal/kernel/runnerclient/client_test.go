package runnerclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/runner"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// startRunner runs the kernel runner in-process (go-zeromq) and connects
// the agent's client (libzmq through pebbe/zmq4) to it: the two ZMTP 3
// implementations must interoperate over PUSH/PULL.
func startRunner(t *testing.T, runtimeType, runtimePath string) *runnerclient.Client {
	t.Helper()
	return startRunnerWith(t, runtimeType, runtimePath, nil)
}

// startRunnerWith is startRunner with the config changed by edit (may be nil).
func startRunnerWith(t *testing.T, runtimeType, runtimePath string, edit func(*runner.Config)) *runnerclient.Client {
	return startRunnerOpts(t, runtimeType, runtimePath, edit, runnerclient.Options{})
}

// startRunnerOpts is startRunnerWith with the client's options.
func startRunnerOpts(t *testing.T, runtimeType, runtimePath string, edit func(*runner.Config), opts runnerclient.Options) *runnerclient.Client {
	t.Helper()
	in, out := testutil.FreePort(t, "127.0.0.1"), testutil.FreePort(t, "127.0.0.1")
	cfg, err := runner.DefaultConfig(runtimeType, runtimePath)
	if err != nil {
		t.Fatal(err)
	}
	// Not the host's /etc/passwd, nor a bootstrap in /home/work.
	cfg.User, cfg.BootstrapPath = nil, ""
	cfg.WorkDir = t.TempDir()
	cfg.ServiceDefsDir = t.TempDir()
	cfg.InputAddr = fmt.Sprintf("tcp://127.0.0.1:%d", in)
	cfg.OutputAddr = fmt.Sprintf("tcp://127.0.0.1:%d", out)
	cfg.ServiceOpenTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- runner.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("runner did not stop")
		}
	})
	c, err := runnerclient.Dial(fmt.Sprintf("127.0.0.1:%d", in), fmt.Sprintf("127.0.0.1:%d", out), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	if _, err := c.Status(sctx); err != nil {
		t.Fatalf("runner status: %v", err)
	}
	return c
}

// runToEnd executes and continues until the run finishes or waits for input.
func runToEnd(t *testing.T, c *runnerclient.Client, runID, mode, code string, opts runnerclient.ExecOptions) runnerclient.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var all runnerclient.Result
	for {
		res, err := c.Execute(ctx, runID, mode, code, opts)
		if err != nil {
			t.Fatalf("execute %s %q: %v", mode, code, err)
		}
		all.RunID, all.Status, all.ExitCode, all.Options = res.RunID, res.Status, res.ExitCode, res.Options
		all.Console = append(all.Console, res.Console...)
		if res.Status != runnerclient.StatusContinued {
			return all
		}
		mode = runnerclient.ModeContinue
	}
}

func output(res runnerclient.Result, typ string) string {
	var b strings.Builder
	for _, item := range res.Console {
		if item.Type == typ {
			b.WriteString(item.Data)
		}
	}
	return b.String()
}

func wantFinished(t *testing.T, res runnerclient.Result, exitCode int) {
	t.Helper()
	if res.Status != runnerclient.StatusFinished || res.ExitCode == nil || *res.ExitCode != exitCode {
		code := "nil"
		if res.ExitCode != nil {
			code = fmt.Sprint(*res.ExitCode)
		}
		t.Fatalf("status %s exit %s, want finished exit %d; console %q", res.Status, code, exitCode, res.Console)
	}
}

func TestShellQueryMode(t *testing.T) {
	c := startRunner(t, "", "")
	query := func(id, code string) runnerclient.Result {
		return runToEnd(t, c, id, runnerclient.ModeQuery, code, runnerclient.ExecOptions{})
	}

	res := query("r1", "echo hello")
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "hello\n" {
		t.Fatalf("stdout %q, want %q", got, "hello\n")
	}

	res = query("r2", "greeting=persisted\ncd /\nfor i in 1 2 3; do\n  echo line $i\ndone\necho oops >&2\nfalse")
	wantFinished(t, res, 1)
	if got := output(res, "stdout"); got != "line 1\nline 2\nline 3\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := output(res, "stderr"); got != "oops\n" {
		t.Fatalf("stderr %q", got)
	}

	res = query("r3", `echo "$greeting in $(pwd)"`)
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "persisted in /\n" {
		t.Fatalf("state did not persist: stdout %q", got)
	}
}

func TestShellInput(t *testing.T) {
	c := startRunner(t, "", "")
	res := runToEnd(t, c, "in1", runnerclient.ModeQuery, "echo ask\nread name\necho \"hi $name\"", runnerclient.ExecOptions{})
	if res.Status != runnerclient.StatusWaitingInput {
		t.Fatalf("status %s, want waiting-input; console %q", res.Status, res.Console)
	}
	if got := output(res, "stdout"); got != "ask\n" {
		t.Fatalf("stdout before input %q", got)
	}
	res = runToEnd(t, c, "in1", runnerclient.ModeInput, "world", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "hi world\n" {
		t.Fatalf("stdout after input %q", got)
	}
}

func TestShellInterrupt(t *testing.T) {
	c := startRunner(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Execute(ctx, "loop", runnerclient.ModeQuery, "kept=yes\nwhile true; do echo tick; sleep 0.1; done",
		runnerclient.ExecOptions{FlushTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != runnerclient.StatusContinued || !strings.Contains(output(res, "stdout"), "tick") {
		t.Fatalf("a running loop should continue with output; got %s %q", res.Status, res.Console)
	}
	if err := c.Interrupt(); err != nil {
		t.Fatal(err)
	}
	res = runToEnd(t, c, "loop", runnerclient.ModeContinue, "", runnerclient.ExecOptions{})
	if res.Status != runnerclient.StatusFinished || res.ExitCode == nil || *res.ExitCode == 0 {
		t.Fatalf("interrupted loop: status %s exit %v", res.Status, res.ExitCode)
	}
	res = runToEnd(t, c, "after", runnerclient.ModeQuery, "echo kept=$kept", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "kept=yes\n" {
		t.Fatalf("shell state lost by the interrupt: %q", got)
	}
}

func TestShellExitRestartsInterpreter(t *testing.T) {
	c := startRunner(t, "", "")
	res := runToEnd(t, c, "e1", runnerclient.ModeQuery, "echo bye; exit 3", runnerclient.ExecOptions{})
	wantFinished(t, res, 3)
	if got := output(res, "stdout"); got != "bye\n" {
		t.Fatalf("stdout %q", got)
	}
	res = runToEnd(t, c, "e2", runnerclient.ModeQuery, "echo again", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "again\n" {
		t.Fatalf("stdout %q", got)
	}
}

func TestBatchMode(t *testing.T) {
	c := startRunner(t, "", "")
	batch := runnerclient.Batch{Clean: "rm -f built", Build: "echo compiled > built", Exec: "cat built; exit 4"}
	var statuses []string
	var all runnerclient.Result
	mode := runnerclient.ModeBatch
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		res, err := c.Execute(ctx, "b1", mode, "", runnerclient.ExecOptions{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, res.Status)
		all.Console = append(all.Console, res.Console...)
		if res.Status == runnerclient.StatusFinished {
			wantFinished(t, res, 4)
			break
		}
		mode = runnerclient.ModeContinue
	}
	got := strings.Join(statuses, ",")
	got = strings.ReplaceAll(got, "continued,", "")
	if got != "clean-finished,build-finished,finished" {
		t.Fatalf("statuses %v", statuses)
	}
	if out := output(all, "stdout"); out != "compiled\n" {
		t.Fatalf("stdout %q", out)
	}
}

func TestCompleteStatusAndService(t *testing.T) {
	c := startRunner(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st.Runtime != runner.RuntimeShell || st.StartedAt == 0 {
		t.Fatalf("status %+v, %v", st, err)
	}
	got, err := c.Complete(ctx, protocol.CompletionRequest{Code: "ech", Options: protocol.CompletionOptions{Line: "ech", Col: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(got, " "), "echo") {
		t.Fatalf("completions of ech: %v", got)
	}
	// The service part needs busybox's httpd.
	busybox := testutil.RequireTool(t, "busybox", "apt-get install busybox-static")
	port := testutil.FreePort(t, "127.0.0.1")
	req := protocol.ServiceRequest{Name: "web", Port: port, Command: []string{busybox, "httpd", "-f", "-p", "127.0.0.1:{ports[0]}", "-h", filepath.Dir(busybox)}}
	res, err := c.StartService(ctx, req)
	if err != nil || res.Status != "started" {
		t.Fatalf("start-service: %+v, %v", res, err)
	}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("service port not open: %v", err)
	}
	_ = conn.Close()
	if res, err := c.StartService(ctx, req); err != nil || res.Status != "running" {
		t.Fatalf("second start-service: %+v, %v", res, err)
	}
	if res, err := c.StartService(ctx, protocol.ServiceRequest{Name: "undefined", Port: port}); err != nil || res.Status != "failed" {
		t.Fatalf("undefined service: %+v, %v", res, err)
	}
	if err := c.ShutdownService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
}

func TestPythonQueryMode(t *testing.T) {
	testutil.RequireTool(t, "python3", "apt-get install python3")
	c := startRunner(t, "python", "")
	res := runToEnd(t, c, "p1", runnerclient.ModeQuery, "x = 6 * 7\nprint('x set')", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	res = runToEnd(t, c, "p2", runnerclient.ModeQuery, "x + 1", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "43\n" {
		t.Fatalf("stdout %q, want 43", got)
	}
	res = runToEnd(t, c, "p3", runnerclient.ModeQuery, "name = input('who? ')\nprint('hi', name)", runnerclient.ExecOptions{})
	if res.Status != runnerclient.StatusWaitingInput {
		t.Fatalf("status %s, want waiting-input; console %q", res.Status, res.Console)
	}
	res = runToEnd(t, c, "p3", runnerclient.ModeInput, "py", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "hi py\n" {
		t.Fatalf("stdout %q", got)
	}
	res = runToEnd(t, c, "p4", runnerclient.ModeQuery, "1/0", runnerclient.ExecOptions{})
	wantFinished(t, res, 1)
	if got := output(res, "stderr"); !strings.Contains(got, "ZeroDivisionError") {
		t.Fatalf("stderr %q", got)
	}
}

// busybox's read builtin polls stdin before reading it; the runner must
// see that as waiting for input too.
func TestBusyboxShellInput(t *testing.T) {
	busybox := testutil.RequireTool(t, "busybox", "apt-get install busybox-static")
	sh := filepath.Join(t.TempDir(), "sh")
	if err := os.Symlink(busybox, sh); err != nil {
		t.Fatal(err)
	}
	c := startRunner(t, "shell", sh)
	res := runToEnd(t, c, "bb", runnerclient.ModeQuery, "read name\necho \"hi $name\"", runnerclient.ExecOptions{})
	if res.Status != runnerclient.StatusWaitingInput {
		t.Fatalf("status %s, want waiting-input; console %q", res.Status, res.Console)
	}
	res = runToEnd(t, c, "bb", runnerclient.ModeInput, "ash", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); got != "hi ash\n" {
		t.Fatalf("stdout %q", got)
	}
}

// TestExecTimeout: a run outliving ExecOptions.ExecTimeout ends with
// exec-timeout and what it printed so far, as upstream's watchdog result
// (agent/kernel.py AbstractCodeRunner.watchdog and get_next_result); the
// bound counts from the run's start, across continue calls.
func TestExecTimeout(t *testing.T) {
	cases := []struct {
		description string
		flush       time.Duration
		minCalls    int // execute calls until exec-timeout: the first, then continues
		maxCalls    int
	}{
		{"the deadline falls inside the first call", 5 * time.Second, 1, 1},
		{"the deadline falls in a continue call", 300 * time.Millisecond, 2, 3},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			c := startRunner(t, "", "")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opts := runnerclient.ExecOptions{FlushTimeout: tc.flush, ExecTimeout: 800 * time.Millisecond}
			mode, calls := runnerclient.ModeQuery, 0
			var all runnerclient.Result
			start := time.Now()
			for {
				res, err := c.Execute(ctx, "slow", mode, "echo started; sleep 20", opts)
				if err != nil {
					t.Fatal(err)
				}
				calls++
				all.Console = append(all.Console, res.Console...)
				if res.Status != runnerclient.StatusContinued {
					all.Status, all.ExitCode = res.Status, res.ExitCode
					break
				}
				mode = runnerclient.ModeContinue
			}
			if all.Status != runnerclient.StatusExecTimeout || all.ExitCode != nil || calls < tc.minCalls || calls > tc.maxCalls {
				t.Fatalf("status %s exit %v after %d calls, want exec-timeout, no exit code, %d to %d calls", all.Status, all.ExitCode, calls, tc.minCalls, tc.maxCalls)
			}
			if took := time.Since(start); took < 800*time.Millisecond || took > 3*time.Second {
				t.Errorf("exec-timeout after %v, want about 800ms", took)
			}
			if got := output(all, "stdout"); got != "started\n" {
				t.Errorf("stdout %q, want what the run printed before the timeout", got)
			}
		})
	}
}

// An idle input connection is closed after PushIdle and opened again by
// the next request, which the runner answers as if nothing happened; the
// output connection stays (a run's output keeps coming).
func TestIdleInputConnectionReopens(t *testing.T) {
	var closed atomic.Int32
	c := startRunnerOpts(t, "shell", "/bin/sh", nil, runnerclient.Options{PushIdle: 100 * time.Millisecond, OnPushClosed: func() { closed.Add(1) }})
	for round := int32(1); round <= 2; round++ {
		testutil.Eventually(t, 5*time.Second, "the idle input connection to close", func() bool {
			return !runnerclient.InputConnected(c) && closed.Load() == round
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: status after the idle close: %v", round, err)
		}
		if !runnerclient.InputConnected(c) {
			t.Fatalf("round %d: a request did not reopen the input connection", round)
		}
	}
	// A run whose request was sent before the close still delivers its
	// output after it.
	res := runToEnd(t, c, "r1", runnerclient.ModeQuery, "sleep 0.3; echo late", runnerclient.ExecOptions{})
	wantFinished(t, res, 0)
	if got := output(res, "stdout"); !strings.Contains(got, "late") {
		t.Errorf("stdout %q, want the output written after the input connection closed", got)
	}
}

// Without PushIdle the input connection stays open.
func TestInputConnectionStaysWithoutPushIdle(t *testing.T) {
	c := startRunner(t, "shell", "/bin/sh")
	time.Sleep(200 * time.Millisecond)
	if !runnerclient.InputConnected(c) {
		t.Fatal("the input connection closed with PushIdle 0")
	}
}
