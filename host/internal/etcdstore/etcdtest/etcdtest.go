// Package etcdtest runs the etcd binary from Debian's etcd-server package
// for tests: a real etcd outside the test process, so it costs the race
// detector nothing and leaves no goroutines in the test.
package etcdtest

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// Start runs a single-node etcd until the test ends and returns its client
// address (host:port). Outside CI a missing binary skips the test; in CI
// it fails it.
func Start(t testing.TB) string {
	t.Helper()
	bin := testutil.RequireTool(t, "etcd", "apt-get install etcd-server")
	client := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
	peer := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
	clientURL, peerURL := "http://"+client, "http://"+peer
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--name", "test", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "test="+peerURL, "--heartbeat-interval", "10", "--election-timeout", "100",
		"--log-level", "error")
	cmd.Stdout, cmd.Stderr = zerolog.NewTestWriter(t), zerolog.NewTestWriter(t)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	testutil.Eventually(t, 20*time.Second, "etcd at "+client+" to listen", func() bool {
		conn, err := net.DialTimeout("tcp", client, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
		}
		return err == nil
	})
	return client
}
