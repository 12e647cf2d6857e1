package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// Sentinel is one redis-server --sentinel process watching one master.
type Sentinel struct {
	Addr        string
	ServiceName string
}

// StartSentinel runs a sentinel that monitors master under serviceName
// (quorum 1) and stops it at cleanup; it returns once the sentinel names
// the master. Without redis-server it skips, or fails under CI.
func StartSentinel(tb testing.TB, master *Server, serviceName string) *Sentinel {
	tb.Helper()
	binary := lookBinary(tb)
	if master.tls != nil {
		tb.Fatal("redistest: a sentinel over TLS is not supported")
	}
	port := testutil.FreePort(tb, "127.0.0.1")
	dir := tb.TempDir()
	_, masterPort, _ := net.SplitHostPort(master.Addr)
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nprotected-mode no\nloglevel warning\n"+
		"sentinel monitor %s 127.0.0.1 %s 1\n", port, dir, serviceName, masterPort)
	if master.password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", serviceName, master.password)
	}
	// The sentinel rewrites its config file, so it lives in the temp dir.
	confPath := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(binary, confPath, "--sentinel")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis sentinel: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	s := &Sentinel{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), ServiceName: serviceName}
	client := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, Protocol: 2})
	defer client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addr, err := client.GetMasterAddrByName(ctx, serviceName).Result()
		cancel()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == master.Addr {
			return s
		}
		select {
		case <-exited:
			tb.Fatalf("redis sentinel exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis sentinel on %s does not name %s's master %s: %v %v", s.Addr, serviceName, master.Addr, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
