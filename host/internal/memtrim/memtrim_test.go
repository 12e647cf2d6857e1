package memtrim_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/baiagent/baiagent/host/internal/memtrim"
)

// The trimmer sleeps until a Note, trims once Delay later however many
// Notes came meanwhile, and wakes again only for a later Note.
func TestTrimmerTrimsOncePerBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trims atomic.Int32
		tr := memtrim.NewWith(5*time.Second, func() bool { trims.Add(1); return true })
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- tr.Run(ctx) }()

		time.Sleep(time.Minute)
		synctest.Wait()
		if n := trims.Load(); n != 0 {
			t.Fatalf("%d trims with nothing noted, want 0", n)
		}
		for range 50 {
			tr.Note()
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(4 * time.Second) // 4.5 s after the first Note
		synctest.Wait()
		if n := trims.Load(); n != 0 {
			t.Fatalf("%d trims before the delay passed, want 0", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := trims.Load(); n != 1 {
			t.Fatalf("%d trims after a burst of 50 notes, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := trims.Load(); n != 1 {
			t.Fatalf("%d trims a minute later with nothing new noted, want 1", n)
		}
		tr.Note()
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if n := trims.Load(); n != 2 {
			t.Fatalf("%d trims after a later note, want 2", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func rssAnonKiB(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssAnon in /proc/self/status")
	return 0
}

// What the trimmer is for: libzmq's connections, as a runner client's,
// leave their buffers in glibc's arenas when closed; Trim gives them back.
func TestTrimReturnsClosedZMQConnections(t *testing.T) {
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	pull, err := zctx.NewSocket(zmq.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	if err := pull.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	endpoint, err := pull.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	memtrim.Trim()
	before := rssAnonKiB(t)
	const n = 300
	var pushes []*zmq.Socket
	for range n {
		s, err := zctx.NewSocket(zmq.PUSH)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetLinger(0); err != nil {
			t.Fatal(err)
		}
		if err := s.Connect(endpoint); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Send(strings.Repeat("x", 1000), 0); err != nil {
			t.Fatal(err)
		}
		pushes = append(pushes, s)
	}
	for range n {
		if _, err := pull.Recv(0); err != nil {
			t.Fatal(err)
		}
	}
	peak := rssAnonKiB(t)
	for _, s := range pushes {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// libzmq frees a closed socket's connection on its own threads.
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for {
		memtrim.Trim()
		after = rssAnonKiB(t)
		if peak-after >= (peak-before)/2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("RssAnon: %d KiB before, %d KiB with %d connections, %d KiB after closing them and trimming", before, peak, n, after)
	if peak-before < 1024 {
		t.Fatalf("%d connections took only %d KiB: nothing to measure", n, peak-before)
	}
	if peak-after < (peak-before)/2 {
		t.Errorf("trimming gave back %d KiB of the %d KiB the closed connections took", peak-after, peak-before)
	}
}
