package callosum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// echoServer answers every call with its own payload: "inline" on the
// socket's goroutine, "shuffled" after a random pause of up to 2 ms (so
// replies come back out of order), "late" after 10 ms, "slow" after 5 s
// unless cancelled.
func echoServer(t *testing.T) string {
	t.Helper()
	srv, err := NewServer(ServerOptions{
		Endpoint:      "tcp://127.0.0.1:*",
		ShutdownGrace: 100 * time.Millisecond,
		Inline:        func(method string) bool { return method == "inline" },
	}, func(ctx context.Context, req *Request) Reply {
		switch req.Header.Method {
		case "shuffled":
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		case "late":
			time.Sleep(10 * time.Millisecond)
		case "slow":
			select {
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
				return Reply{Type: TypeCancelled}
			}
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
	return srv.Endpoint()
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
	c := dialTest(t, echoServer(t))
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
	c := dialTest(t, echoServer(t))
	const callers = 16
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := c.Call(context.Background(), "slow", []byte("x"))
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all send
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
