package managertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis names the 26.8 manager reads (common/defs/__init__.py,
// valkey_stream/client.py, message_queue/redis_queue).
const (
	StreamDB         = 4
	StreamKey        = "events"
	BroadcastChannel = "events_all"
)

// Reader reads one Redis server's events as the manager does: the events
// stream in DB 4, and events_all, to which it subscribes when created so
// that nothing published afterwards is missed. Every message that does not
// decode strictly fails the test.
type Reader struct {
	tb     testing.TB
	stream *redis.Client
	sub    *redis.PubSub

	mu         sync.Mutex
	broadcasts []Event
	changed    chan struct{} // closed and replaced when a broadcast arrives

	done chan struct{}
}

// NewReader subscribes to events_all on addr and returns a reader that is
// closed at cleanup.
func NewReader(tb testing.TB, addr string) *Reader {
	tb.Helper()
	r := &Reader{
		tb:      tb,
		stream:  redis.NewClient(&redis.Options{Addr: addr, DB: StreamDB, Protocol: 2}),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.sub = r.stream.Subscribe(ctx, BroadcastChannel)
	if _, err := r.sub.Receive(ctx); err != nil {
		tb.Fatalf("managertest: subscribe to %s: %v", BroadcastChannel, err)
	}
	go r.listen()
	tb.Cleanup(func() {
		_ = r.sub.Close()
		<-r.done
		_ = r.stream.Close()
	})
	return r
}

// listen collects broadcasts until the subscription is closed.
func (r *Reader) listen() {
	defer close(r.done)
	ch := r.sub.Channel(redis.WithChannelSize(1024))
	for msg := range ch {
		ev, err := DecodeBroadcast(msg.Payload)
		if err != nil {
			r.tb.Errorf("managertest: the manager cannot decode a broadcast: %v\n%s", err, msg.Payload)
			continue
		}
		r.mu.Lock()
		r.broadcasts = append(r.broadcasts, ev)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

// Stream returns every entry of the events stream, decoded; an entry that
// does not decode fails the test.
func (r *Reader) Stream() []Event {
	r.tb.Helper()
	evs, err := r.readStream(context.Background())
	if err != nil {
		r.tb.Fatalf("managertest: %v", err)
	}
	return evs
}

func (r *Reader) readStream(ctx context.Context) ([]Event, error) {
	// Raw XRANGE keeps the field order, which go-redis' XMessage loses.
	raw, err := r.stream.Do(ctx, "XRANGE", StreamKey, "-", "+").Slice()
	if err != nil {
		return nil, fmt.Errorf("XRANGE %s: %w", StreamKey, err)
	}
	out := make([]Event, 0, len(raw))
	for _, e := range raw {
		entry, ok := e.([]any)
		if !ok || len(entry) != 2 {
			return nil, fmt.Errorf("stream entry %v is not [id, fields]", e)
		}
		fields, ok := entry[1].([]any)
		if !ok {
			return nil, fmt.Errorf("stream entry %v: fields are %T", entry[0], entry[1])
		}
		pairs := make([]string, len(fields))
		for i, f := range fields {
			s, ok := f.(string)
			if !ok {
				return nil, fmt.Errorf("stream entry %v: field %d is %T", entry[0], i, f)
			}
			pairs[i] = s
		}
		ev, err := DecodeStreamEntry(pairs)
		if err != nil {
			return nil, fmt.Errorf("the manager cannot decode stream entry %v: %w", entry[0], err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// Broadcasts returns the events_all messages received so far.
func (r *Reader) Broadcasts() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.broadcasts...)
}

// WaitStream polls the stream until match accepts an entry, and returns it;
// the test fails after timeout.
func (r *Reader) WaitStream(timeout time.Duration, match func(Event) bool) Event {
	r.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs, err := r.readStream(context.Background())
		if err != nil {
			r.tb.Fatalf("managertest: %v", err)
		}
		for _, ev := range evs {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("managertest: no matching stream event within %v; stream: %s", timeout, Names(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitBroadcast waits until match accepts a broadcast, and returns it.
func (r *Reader) WaitBroadcast(timeout time.Duration, match func(Event) bool) Event {
	r.tb.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		for _, ev := range r.broadcasts {
			if match(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		changed := r.changed
		got := Names(r.broadcasts)
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			r.tb.Fatalf("managertest: no matching broadcast within %v; got: %s", timeout, got)
		}
	}
}

// Named matches events by name.
func Named(name string) func(Event) bool {
	return func(ev Event) bool { return ev.Name == name }
}

// Names lists events' names, for failure messages.
func Names(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Name
	}
	return out
}

// BgtaskCache reads the cached broadcast of a background task, DB 4
// bgtask.{task_id}, as the manager's cache propagator does
// (common/events/hub/propagators/cache.py), and its TTL.
func (r *Reader) BgtaskCache(ctx context.Context, taskID string) (Event, time.Duration, error) {
	key := "bgtask." + taskID
	raw, err := r.stream.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return Event{}, 0, fmt.Errorf("%s is not set", key)
	}
	if err != nil {
		return Event{}, 0, fmt.Errorf("GET %s: %w", key, err)
	}
	ttl, err := r.stream.TTL(ctx, key).Result()
	if err != nil {
		return Event{}, 0, fmt.Errorf("TTL %s: %w", key, err)
	}
	ev, err := DecodeBroadcast(raw)
	if err != nil {
		return Event{}, 0, fmt.Errorf("%s: %w", key, err)
	}
	return ev, ttl, nil
}
