package pluginkit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
)

func list(ids ...string) []sdk.Device {
	out := make([]sdk.Device, 0, len(ids))
	for _, id := range ids {
		out = append(out, sdk.Device{ID: id})
	}
	return out
}

func ids(devs []sdk.Device) string {
	s := ""
	for _, d := range devs {
		s += d.ID
	}
	return s
}

func TestBroadcaster(t *testing.T) {
	tests := []struct {
		description string
		broadcasts  [][]sdk.Device
		want        string
	}{
		{"only the current list", nil, "a"},
		{"one change", [][]sdk.Device{list("a", "b")}, "ab"},
		{"an unread list is replaced by the newest", [][]sdk.Device{list("b"), list("c"), list("c", "d")}, "cd"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			var b Broadcaster
			ctx, cancel := context.WithCancel(context.Background())
			ch := b.Watch(ctx, func() []sdk.Device { return list("a") })
			if len(tc.broadcasts) > 0 {
				if got := ids(<-ch); got != "a" {
					t.Fatalf("first list %q, want a", got)
				}
			}
			for _, l := range tc.broadcasts {
				b.Broadcast(func() []sdk.Device { return l })
			}
			if got := ids(<-ch); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			cancel()
			if _, ok := <-ch; ok {
				t.Fatal("channel not closed after cancel")
			}
			b.Broadcast(func() []sdk.Device { return list("x") }) // no watchers left
		})
	}
}

// Watches and broadcasts racing each other leave every watcher with one
// unread list; the next broadcast replaces it, so each watcher then reads
// exactly the newest list, and each channel closes when ctx ends.
func TestBroadcasterConcurrent(t *testing.T) {
	var b Broadcaster
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const watchers = 8
	chans := make([]<-chan []sdk.Device, watchers)
	var wg sync.WaitGroup
	for i := range watchers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			chans[i] = b.Watch(ctx, func() []sdk.Device { return list("a") })
		}()
		go func() {
			defer wg.Done()
			b.Broadcast(func() []sdk.Device { return list("b") })
		}()
	}
	wg.Wait()
	b.Broadcast(func() []sdk.Device { return list("c") })
	for i, ch := range chans {
		if got := ids(<-ch); got != "c" {
			t.Errorf("watcher %d read %q, want the newest list c", i, got)
		}
	}
	cancel()
	for i, ch := range chans {
		for l := range ch {
			t.Errorf("watcher %d got %q after the last broadcast", i, ids(l))
		}
	}
}

func TestPoll(t *testing.T) {
	tests := []struct {
		description string
		calls       int32
	}{
		{"calls fn every interval", 3},
		{"stops when ctx ends", 1},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var n atomic.Int32
			done := make(chan struct{})
			go func() {
				defer close(done)
				Poll(ctx, time.Millisecond, func() {
					if n.Add(1) == tc.calls {
						cancel()
					}
				})
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Poll did not return")
			}
			if got := n.Load(); got < tc.calls {
				t.Fatalf("%d calls, want at least %d", got, tc.calls)
			}
		})
	}
}

func TestSameError(t *testing.T) {
	tests := []struct {
		description string
		a, b        error
		want        bool
	}{
		{"both nil", nil, nil, true},
		{"one nil", errors.New("x"), nil, false},
		{"other nil", nil, errors.New("x"), false},
		{"same message", errors.New("x"), errors.New("x"), true},
		{"different message", errors.New("x"), errors.New("y"), false},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if got := SameError(tc.a, tc.b); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
