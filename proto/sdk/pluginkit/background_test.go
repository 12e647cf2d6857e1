package pluginkit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

type ctxKey struct{}

func TestBackground(t *testing.T) {
	var b pluginkit.Background
	b.Stop() // nothing runs yet

	callCtx, endCall := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "configure"))
	var running atomic.Int32
	started, firstDone := make(chan string, 1), make(chan struct{})
	b.Start(callCtx, func(ctx context.Context) {
		defer close(firstDone)
		running.Add(1)
		defer running.Add(-1)
		started <- ctx.Value(ctxKey{}).(string)
		<-ctx.Done()
	})
	if v := <-started; v != "configure" {
		t.Errorf("the loop's context lost the caller's values: %q", v)
	}
	endCall()
	select {
	case <-firstDone:
		t.Fatal("the loop ended with the context of the call that started it")
	case <-time.After(50 * time.Millisecond):
	}

	// A second Start ends the first loop before the second runs.
	var overlap atomic.Bool
	secondStarted := make(chan struct{})
	b.Start(context.Background(), func(ctx context.Context) {
		if running.Load() != 0 {
			overlap.Store(true)
		}
		close(secondStarted)
		<-ctx.Done()
	})
	<-secondStarted
	if overlap.Load() {
		t.Error("the second loop started while the first still ran")
	}
	select {
	case <-firstDone:
	default:
		t.Error("Start returned before the first loop did")
	}

	// Stop waits for the loop; a second Stop does nothing.
	returned := make(chan struct{})
	b.Start(context.Background(), func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		close(returned)
	})
	b.Stop()
	select {
	case <-returned:
	default:
		t.Error("Stop returned before the loop did")
	}
	b.Stop()
}

// Start and Stop from many goroutines: at most one loop runs at any time.
func TestBackgroundConcurrent(t *testing.T) {
	var b pluginkit.Background
	var running, maxRunning atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%3 == 0 {
					b.Stop()
					continue
				}
				b.Start(context.Background(), func(ctx context.Context) {
					n := running.Add(1)
					for {
						m := maxRunning.Load()
						if n <= m || maxRunning.CompareAndSwap(m, n) {
							break
						}
					}
					<-ctx.Done()
					running.Add(-1)
				})
			}
		})
	}
	wg.Wait()
	b.Stop()
	if m := maxRunning.Load(); m != 1 {
		t.Errorf("%d loops ran at once, want 1", m)
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d loops still run after Stop", n)
	}
}
