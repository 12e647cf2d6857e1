package pluginkit

import (
	"context"
	"sync"
	"time"

	"github.com/baiagent/baiagent/proto/sdk"
)

// Broadcaster fans complete device lists out to WatchDevices callers. A
// watcher that has not read the previous list gets only the newest: each
// list is complete. The zero value is ready to use.
//
// The list is always taken by calling current under the broadcaster's lock,
// so a watcher never sees an older list after a newer one. current may take
// the plugin's own lock; the plugin must not hold that lock while calling
// Watch or Broadcast.
type Broadcaster struct {
	mu       sync.Mutex
	watchers map[int]chan []sdk.Device
	next     int
}

// Watch sends the current list, then every broadcast list, until ctx ends;
// then the channel is closed.
func (b *Broadcaster) Watch(ctx context.Context, current func() []sdk.Device) <-chan []sdk.Device {
	ch := make(chan []sdk.Device, 1)
	b.mu.Lock()
	if b.watchers == nil {
		b.watchers = map[int]chan []sdk.Device{}
	}
	id := b.next
	b.next++
	b.watchers[id] = ch
	ch <- current()
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.watchers, id)
		close(ch)
		b.mu.Unlock()
	}()
	return ch
}

// Broadcast sends the current list to every watcher.
func (b *Broadcaster) Broadcast(current func() []sdk.Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.watchers {
		select {
		case <-ch:
		default:
		}
		ch <- current()
	}
}

// Poll calls fn every interval until ctx ends.
func Poll(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// SameError reports whether a and b are both nil or have the same message:
// a re-read that fails the same way again is no change.
func SameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}
