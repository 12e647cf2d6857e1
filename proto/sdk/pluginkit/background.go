package pluginkit

import (
	"context"
	"sync"
)

// Background runs one loop at a time in its own goroutine, such as a
// plugin's device monitor: Configure replaces the running loop with one for
// the new configuration, Close ends it. The zero value is ready to use.
type Background struct {
	mu   sync.Mutex // serialises Start and Stop
	stop context.CancelFunc
	done chan struct{}
}

// Start stops the loop that runs, if any, and waits for it to return, then
// runs loop in a new goroutine. loop's context keeps ctx's values but not
// its cancellation (a Configure call's context ends with the call); it is
// cancelled by Stop or the next Start.
func (b *Background) Start(ctx context.Context, loop func(ctx context.Context)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	b.stop, b.done = stop, done
	go func() {
		defer close(done)
		loop(loopCtx)
	}()
}

// Stop cancels the running loop and waits for it to return. It does
// nothing when no loop runs, so it may be called any number of times.
func (b *Background) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
}

func (b *Background) stopLocked() {
	if b.stop == nil {
		return
	}
	b.stop()
	<-b.done
	b.stop, b.done = nil, nil
}
