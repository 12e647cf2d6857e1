package callosum

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// echoPair is a DEALER under a socketOwner, connected to a ROUTER that
// sends every message back.
func echoPair(t *testing.T) (*zmq.Socket, *socketOwner) {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	router, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	_ = router.SetLinger(0)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	endpoint, _ := router.GetLastEndpoint()
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		defer router.Close()
		for {
			msg, err := router.RecvMessageBytes(0)
			if err != nil {
				return // ETERM
			}
			if _, err := router.SendMessage(msg); err != nil {
				return
			}
		}
	}()
	dealer, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	_ = dealer.SetLinger(0)
	if err := dealer.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	owner, err := newSocketOwner(dealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		owner.close()
		dealer.Close()
		_ = zctx.Term()
		<-echoDone
	})
	return dealer, owner
}

// Many goroutines queueing at once, some while the owner sleeps and some
// while it is busy: every message is sent once and its echo received once.
func TestSocketOwnerDeliversEverything(t *testing.T) {
	_, owner := echoPair(t)
	const senders, each = 20, 200
	var received, sent atomic.Int64
	seen := make([]atomic.Bool, senders*each)
	runErr := make(chan error, 1)
	go func() {
		runErr <- owner.run(func(frames [][]byte) {
			var i int
			if len(frames) != 1 {
				t.Errorf("echo of %d frames", len(frames))
				return
			}
			if _, err := fmt.Sscan(string(frames[0]), &i); err != nil || seen[i].Swap(true) {
				t.Errorf("echo %q unknown or seen twice", frames[0])
			}
			received.Add(1)
		}, func() (bool, time.Duration) { return false, 0 })
	}()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := s*each + i
				err := owner.enqueue(outgoing{frames: [][]byte{fmt.Appendf(nil, "%d", n)}, sent: func(err error) {
					if err != nil {
						t.Errorf("send %d: %v", n, err)
					}
					sent.Add(1)
				}})
				if err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // let the owner fall asleep now and then
				}
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 30*time.Second, "every message echoed", func() bool { return received.Load() >= senders*each })
	owner.stop()
	if err := <-runErr; err != nil {
		t.Fatalf("run: %v", err)
	}
	if sent.Load() != senders*each || received.Load() != senders*each {
		t.Fatalf("sent %d, echoed %d, want %d each", sent.Load(), received.Load(), senders*each)
	}
	if err := owner.enqueue(outgoing{frames: [][]byte{[]byte("late")}}); err != errOwnerStopped {
		t.Fatalf("enqueue after stop: %v, want errOwnerStopped", err)
	}
}

// An idle owner still asks tick again within the time tick gives it, and a
// wake-up reaches it at once: that is how the server notices its context
// ending and times its drain.
func TestSocketOwnerTicksAndWakes(t *testing.T) {
	_, owner := echoPair(t)
	var ticks atomic.Int64
	woken := make(chan struct{})
	var wantWake atomic.Bool
	runErr := make(chan error, 1)
	go func() {
		runErr <- owner.run(func([][]byte) {}, func() (bool, time.Duration) {
			ticks.Add(1)
			if wantWake.Load() {
				return true, 0
			}
			if ticks.Load() > 5 {
				return false, 0 // from now on only a wake-up brings tick back
			}
			return false, 10 * time.Millisecond
		})
		close(woken)
	}()
	testutil.Eventually(t, 10*time.Second, "more than five ticks with a 10 ms limit", func() bool { return ticks.Load() > 5 })
	wantWake.Store(true)
	owner.wakeUp()
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("wakeUp did not bring the owner back to tick")
	}
	if err := <-runErr; err != nil {
		t.Fatalf("run: %v", err)
	}
}
