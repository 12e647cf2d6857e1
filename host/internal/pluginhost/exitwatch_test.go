package pluginhost

import (
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// startSleep runs sleep and reaps it in the background, as go-plugin does;
// reaped says when that is done.
func startSleep(t *testing.T) (*exec.Cmd, func() bool) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	var done atomic.Bool
	go func() {
		_ = cmd.Wait()
		done.Store(true)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, done.Load
}

func TestExitWatch(t *testing.T) {
	t.Run("a process that exits is seen through its pidfd", func(t *testing.T) {
		cmd, reaped := startSleep(t)
		w := watchExit(cmd.Process.Pid, reaped)
		defer w.Stop()
		if w.pidfd == nil {
			t.Skip("no pidfd_open on this kernel")
		}
		select {
		case <-w.exited:
			t.Fatal("exited while the process runs")
		case <-time.After(200 * time.Millisecond):
		}
		_ = cmd.Process.Kill()
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("the exit was not seen")
		}
		if !reaped() {
			t.Fatal("exited closed before the process was reaped")
		}
	})
	t.Run("Stop ends the watch of a process still running", func(t *testing.T) {
		cmd, reaped := startSleep(t)
		w := watchExit(cmd.Process.Pid, reaped)
		w.Stop() // returns only once the goroutine has ended
		select {
		case <-w.exited:
			t.Fatal("exited closed for a process still running")
		default:
		}
		w.Stop() // twice is fine
	})
	t.Run("without a pidfd it asks the reaper", func(t *testing.T) {
		var gone atomic.Bool
		w := watchExit(-1, gone.Load) // no such pid: no pidfd
		defer w.Stop()
		if w.pidfd != nil {
			t.Fatal("a pidfd for pid -1")
		}
		gone.Store(true)
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("the fallback did not see the exit")
		}
	})
}
