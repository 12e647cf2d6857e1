package watcher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeSystem records every action; files are real (tests use temp dirs),
// commands are never run.
type fakeSystem struct {
	mu sync.Mutex
	// calls is every command, as "systemctl stop x.service", "mount ...".
	calls []string
	// fail maps a command prefix to the error it returns.
	fail map[string]error
	// stdout maps a command prefix to its output.
	stdout     map[string]string
	procMounts string
	mkdirs     []string
	rmdirs     []string
	existing   map[string]bool // directories Mkdir finds already there
	shutdown   chan struct{}
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{fail: map[string]error{}, stdout: map[string]string{}, existing: map[string]bool{}, shutdown: make(chan struct{}, 1)}
}

func (f *fakeSystem) record(args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := strings.Join(args, " ")
	f.calls = append(f.calls, call)
	var out string
	for prefix, o := range f.stdout {
		if strings.HasPrefix(call, prefix) {
			out = o
		}
	}
	for prefix, err := range f.fail {
		if strings.HasPrefix(call, prefix) {
			return out, &CommandError{Args: args, Stderr: "fake failure", Err: err}
		}
	}
	return out, nil
}

func (f *fakeSystem) Systemctl(_ context.Context, args ...string) (string, error) {
	return f.record(append([]string{"systemctl"}, args...)...)
}

func (f *fakeSystem) Mount(_ context.Context, fsType, options, source, target string) (string, error) {
	return f.record(append([]string{"mount"}, mountArgs(fsType, options, source, target)...)...)
}

func (f *fakeSystem) Unmount(_ context.Context, target string) (string, error) {
	return f.record("umount", "--", target)
}

func (f *fakeSystem) Shutdown(context.Context) error {
	_, err := f.record("shutdown", "-h", "now")
	f.shutdown <- struct{}{}
	return err
}

func (f *fakeSystem) ProcMounts() ([]byte, error) { return []byte(f.procMounts), nil }

func (f *fakeSystem) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

func (f *fakeSystem) WriteFile(path string, data []byte) error {
	return OSSystem{}.WriteFile(path, data)
}

func (f *fakeSystem) Mkdir(path string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mkdirs = append(f.mkdirs, path)
	if err := f.fail["mkdir"]; err != nil {
		return false, err
	}
	return !f.existing[path], nil
}

func (f *fakeSystem) Rmdir(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rmdirs = append(f.rmdirs, path)
	return nil
}

func (f *fakeSystem) snapshot() (calls, mkdirs, rmdirs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]string(nil), f.mkdirs...), append([]string(nil), f.rmdirs...)
}

var errNotFound = fmt.Errorf("exec: %q: %w", "systemctl", exec.ErrNotFound)

// fakeStore is etcd's global scope.
type fakeStore struct {
	mu   sync.Mutex
	kv   map[string]string
	err  error
	gets int
}

func (s *fakeStore) Get(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.err != nil {
		return "", false, s.err
	}
	v, ok := s.kv[key]
	return v, ok, nil
}

func (s *fakeStore) set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[key] = value
}

func (s *fakeStore) getCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

func (s *fakeStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}
