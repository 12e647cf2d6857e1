// Package redistest runs a real redis-server for tests, on a free loopback
// port with its files in a temporary directory.
package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// Server is one redis-server process that can be stopped and started again
// on the same port, to simulate an outage.
type Server struct {
	Addr       string
	binary     string
	dir        string
	port       int
	persistent bool
	password   string
	// tls is the server's certificate when it speaks only TLS.
	tls    *tlsFiles
	cmd    *exec.Cmd
	exited chan struct{}
}

// Options are what StartWith can set beyond Start's.
type Options struct {
	Persistent bool
	// Password is requirepass (and masterauth) when set.
	Password string
	// TLS serves only TLS, with a fresh self-signed certificate for
	// 127.0.0.1 (see CACertPool).
	TLS bool
}

// Start runs redis-server for the test and stops it at cleanup. Without the
// binary it skips the test, except under CI (CI set), where it fails.
// persistent turns on the append-only file, so data survives Stop/Start.
func Start(tb testing.TB, persistent bool) *Server {
	tb.Helper()
	return StartWith(tb, Options{Persistent: persistent})
}

// StartWith is Start with a password or TLS.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	binary := lookBinary(tb)
	port := testutil.FreePort(tb, "127.0.0.1")
	var err error
	s := &Server{binary: binary, dir: tb.TempDir(), port: port, persistent: opts.Persistent,
		password: opts.Password, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if opts.TLS {
		if s.tls, err = writeSelfSigned(s.dir); err != nil {
			tb.Fatal(err)
		}
	}
	s.StartAgain(tb)
	tb.Cleanup(func() { s.Stop(tb) })
	return s
}

// lookBinary finds redis-server: missing, it skips the test, except under
// CI (CI set), where it fails. Sentinels run from the same binary
// (redis-server --sentinel), so no redis-sentinel package is needed.
func lookBinary(tb testing.TB) string {
	tb.Helper()
	return testutil.RequireTool(tb, "redis-server", "apt-get install redis-server")
}

// StartAgain starts the server (again) on its port and waits until it
// answers PING.
func (s *Server) StartAgain(tb testing.TB) {
	tb.Helper()
	if s.cmd != nil {
		tb.Fatal("redistest: server already running")
	}
	args := []string{"--port", strconv.Itoa(s.port)}
	if s.tls != nil {
		args = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.tls.cert, "--tls-key-file", s.tls.key, "--tls-ca-cert-file", s.tls.cert,
			"--tls-auth-clients", "no"}
	}
	args = append(args, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	if s.password != "" {
		args = append(args, "--requirepass", s.password, "--masterauth", s.password)
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

	pingOpts := s.options(0)
	pingOpts.MaxRetries = -1
	client := redis.NewClient(pingOpts)
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
	c := redis.NewClient(s.options(db))
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// options reach this server directly, trusting its certificate.
func (s *Server) options(db int) *redis.Options {
	opts := &redis.Options{Addr: s.Addr, DB: db, Protocol: 2, Password: s.password}
	if s.tls != nil {
		opts.TLSConfig = &tls.Config{RootCAs: s.tls.pool, MinVersion: tls.VersionTLS12}
	}
	return opts
}

// CACertPool trusts this server's self-signed certificate; nil without TLS.
func (s *Server) CACertPool() *x509.CertPool {
	if s.tls == nil {
		return nil
	}
	return s.tls.pool
}
