package callosum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// echoServer answers every call with its own payload: "inline" on the
// socket's goroutine, "shuffled" after yielding a random number of times
// (so replies come back out of order), "late" only once the test has
// released that payload (after its caller gave up), "slow" only when
// cancelled, each "slow" call announcing itself on slowEntered first.
type echo struct {
	endpoint    string
	slowEntered chan struct{}
	late        sync.Map // payload -> chan struct{}, closed by release
}

func (e *echo) lateGate(payload string) chan struct{} {
	ch, _ := e.late.LoadOrStore(payload, make(chan struct{}))
	return ch.(chan struct{})
}

// release lets the "late" call with payload answer.
func (e *echo) release(payload []byte) { close(e.lateGate(string(payload))) }

func echoServer(t *testing.T) *echo {
	t.Helper()
	e := &echo{slowEntered: make(chan struct{}, 64)}
	srv, err := NewServer(ServerOptions{
		Endpoint:      "tcp://127.0.0.1:*",
		ShutdownGrace: 100 * time.Millisecond,
		Inline:        func(method string) bool { return method == "inline" },
	}, func(ctx context.Context, req *Request) Reply {
		switch req.Header.Method {
		case "shuffled":
			for range rand.IntN(64) {
				runtime.Gosched()
			}
		case "late":
			select {
			case <-e.lateGate(string(req.Payload)):
			case <-ctx.Done():
				return Reply{Type: TypeCancelled}
			}
		case "slow":
			e.slowEntered <- struct{}{}
			<-ctx.Done()
			return Reply{Type: TypeCancelled}
		}
		return Reply{Type: TypeResult, Payload: req.Payload}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e.endpoint = srv.Endpoint()
	return e
}

func dialTest(t *testing.T, endpoint string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), endpoint, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Many callers at once, replies out of order, some callers giving up early:
// every call that waits gets its own answer, and the client still works.
func TestClientConcurrentCalls(t *testing.T) {
	e := echoServer(t)
	c := dialTest(t, e.endpoint)
	const callers, each = 32, 150
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				method := []string{"inline", "shuffled"}[i%2]
				payload := fmt.Appendf(nil, "%d/%d", g, i)
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				giveUp := i%25 == 7
				if giveUp {
					ctx, cancel = context.WithTimeout(ctx, 50*time.Microsecond)
					method = "late" // its reply comes to no one
				}
				got, err := c.Call(ctx, method, payload)
				cancel()
				switch {
				case giveUp && errors.Is(err, context.DeadlineExceeded):
					e.release(payload) // its reply comes now, to no one
				case err != nil:
					t.Errorf("%s %s: %v", method, payload, err)
					return
				case !bytes.Equal(got, payload):
					t.Errorf("%s %s: answered %q", method, payload, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, err := c.Call(context.Background(), "inline", []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("call after the storm: %q, %v", got, err)
	}
}

// Close while calls wait (one of them leading): they all end with ErrClosed
// at once, not when their replies would have come.
func TestClientCloseDuringCalls(t *testing.T) {
	e := echoServer(t)
	c := dialTest(t, e.endpoint)
	const callers = 16
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := c.Call(context.Background(), "slow", []byte("x"))
			errs <- err
		}()
	}
	for range callers {
		<-e.slowEntered // every call is in flight at the server
	}
	start := time.Now()
	c.Close()
	for range callers {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("call during Close: %v, want ErrClosed", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("calls still waiting %v after Close", time.Since(start))
		}
	}
	if _, err := c.Call(context.Background(), "inline", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
}
