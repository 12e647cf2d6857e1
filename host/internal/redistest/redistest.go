// Package redistest runs a real redis-server for tests, on a free loopback
// port with its files in a temporary directory.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process that can be stopped and started again
// on the same port, to simulate an outage.
type Server struct {
	Addr       string
	binary     string
	dir        string
	port       int
	persistent bool
	cmd        *exec.Cmd
	exited     chan struct{}
}

// Start runs redis-server for the test and stops it at cleanup. Without the
// binary it skips the test, except under CI (CI set), where it fails.
// persistent turns on the append-only file, so data survives Stop/Start.
func Start(tb testing.TB, persistent bool) *Server {
	tb.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server is required in CI (apt-get install redis-server): %v", err)
		}
		tb.Skipf("redis-server not installed (apt-get install redis-server); skipping outside CI")
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{binary: binary, dir: tb.TempDir(), port: port, persistent: persistent,
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.StartAgain(tb)
	tb.Cleanup(func() { s.Stop(tb) })
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartAgain starts the server (again) on its port and waits until it
// answers PING.
func (s *Server) StartAgain(tb testing.TB) {
	tb.Helper()
	if s.cmd != nil {
		tb.Fatal("redistest: server already running")
	}
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
	}
	if s.persistent {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(s.binary, args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()

	client := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1})
	defer client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.cmd = nil
			tb.Fatalf("redis-server exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on %s not answering: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down (SIGTERM, so the append-only file is flushed)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Client returns a client for one logical database, closed at cleanup.
func (s *Server) Client(tb testing.TB, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db, Protocol: 2})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
