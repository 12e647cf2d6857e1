package pluginhost

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// exitWatch tells when a launched command has exited and go-plugin has
// reaped it. It sleeps in the runtime's poller on a pidfd, which becomes
// readable when the process exits: asking go-plugin every 100 ms woke an
// idle agent ten times a second per plugin. Where pidfd_open is missing
// (Linux before 5.3) it falls back to asking every exitPollInterval.
type exitWatch struct {
	exited   chan struct{} // closed once the command exited and was reaped
	stop     chan struct{}
	stopOnce sync.Once
	pidfd    *os.File // nil on the fallback
	done     chan struct{}
}

func watchExit(pid int, reaped func() bool) *exitWatch {
	w := &exitWatch{exited: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	w.pidfd = openPidfd(pid)
	go w.run(reaped)
	return w
}

func openPidfd(pid int) *os.File {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	// os.NewFile registers only a non-blocking fd with the poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "pidfd")
}

func (w *exitWatch) run(reaped func() bool) {
	defer close(w.done)
	if w.pidfd != nil {
		// Closing twice (here and in Stop) is harmless: the second fails.
		defer w.pidfd.Close()
		if !readable(w.pidfd) {
			return // closed: the watch was stopped
		}
	}
	// Exited, or no pidfd: go-plugin reaps the process and marks it
	// exited after its Wait returns (which also waits for the pipes).
	tick := time.NewTicker(exitPollInterval)
	defer tick.Stop()
	for !reaped() {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
	close(w.exited)
}

// readable sleeps until f polls readable; false when f was closed.
func readable(f *os.File) bool {
	raw, err := f.SyscallConn()
	if err != nil {
		return false
	}
	err = raw.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		if errors.Is(err, unix.EINTR) {
			return false
		}
		return err != nil || n > 0
	})
	return err == nil
}

// Stop ends the watch and waits for its goroutine.
func (w *exitWatch) Stop() {
	w.stopOnce.Do(func() {
		close(w.stop)
		if w.pidfd != nil {
			_ = w.pidfd.Close()
		}
	})
	<-w.done
}
