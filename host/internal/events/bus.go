package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/spool"
)

// Redis logical databases the agent's clients use (redisconn's, which
// follow upstream's REDIS_*_DB).
const (
	StatisticsDB = redisconn.DBStatistics
	LiveDB       = redisconn.DBLive
	ImageDB      = redisconn.DBImage
	StreamDB     = redisconn.DBStream
)

// RedisOptions is where the event stream's Redis is: the stream role's
// target of the agent's Redis profile.
type RedisOptions = redisconn.Target

// NewRedisClient returns a client for one logical database at opts (see
// redisconn.NewClient: short timeouts, RESP2, sentinel and TLS as set).
func NewRedisClient(opts RedisOptions, db int) *redis.Client {
	return redisconn.NewClient(opts, db)
}

// Options configures a Bus.
type Options struct {
	// AgentID is the "source" of every event.
	AgentID string
	// Redis is nil when no Redis is configured: events then go to the log
	// and the ring buffer only.
	Redis    *RedisOptions
	Encoding Encoding
	// QueueDir holds the undelivered lifecycle events (required with Redis).
	QueueDir string
	// QueueMaxBytes bounds the on-disk queue (spool.DefaultMaxBytes if 0).
	QueueMaxBytes int64
	// RingSize is how many recent events GET /v1/events shows (256 if 0).
	RingSize int
	// SendTimeout bounds one delivery attempt (3 s if 0).
	SendTimeout time.Duration
	// RetryMin and RetryMax bound the redelivery backoff (200 ms and 10 s if 0).
	RetryMin, RetryMax time.Duration
	Logger             zerolog.Logger
}

// ErrDropped is returned by Emit for a droppable event (a heartbeat) that
// could not be sent now.
var ErrDropped = errors.New("event dropped while Redis is unreachable")

// Bus delivers events. Lifecycle events are delivered in the order Emit
// accepted them: directly when nothing is queued, else behind the queue.
type Bus struct {
	opts   Options
	client *redis.Client // nil without Redis
	queue  *spool.Queue  // nil without Redis
	ring   *ring

	// sendMu serializes sends and queue appends so that order holds.
	sendMu sync.Mutex
	// outage is true from a failed send until the queue is drained; it
	// keeps the log to one line per outage.
	outage bool

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// New opens the queue in opts.QueueDir and starts redelivery of whatever
// an earlier run left there.
func New(ctx context.Context, opts Options) (*Bus, error) {
	if opts.AgentID == "" {
		return nil, errors.New("events: no agent id")
	}
	if opts.RingSize <= 0 {
		opts.RingSize = 256
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 3 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 200 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(10*time.Second, opts.RetryMin)
	}
	b := &Bus{opts: opts, ring: newRing(opts.RingSize), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if opts.Redis == nil {
		opts.Logger.Warn().Msg("no Redis configured: events go to the log and to GET /v1/events only, and no manager will see them")
		close(b.done)
		return b, nil
	}
	if opts.QueueDir == "" {
		return nil, errors.New("events: no queue directory")
	}
	queue, err := spool.Open(spool.Options{
		Dir: opts.QueueDir, MaxBytes: opts.QueueMaxBytes,
		Logger: opts.Logger.With().Str("component", "event-queue").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("events: open queue: %w", err)
	}
	if n := queue.Len(); n > 0 {
		opts.Logger.Info().Int("events", n).Msg("redelivering events queued by an earlier run")
	}
	b.queue = queue
	b.client = NewRedisClient(*opts.Redis, StreamDB)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	go b.redeliver(runCtx)
	b.signal()
	return b, nil
}

// HasRedis says whether events reach a manager at all.
func (b *Bus) HasRedis() bool { return b.client != nil }

// QueueDepth is the number of lifecycle events waiting for Redis.
func (b *Bus) QueueDepth() int {
	if b.queue == nil {
		return 0
	}
	return b.queue.Len()
}

// Emit sends ev, or queues it on disk when Redis cannot take it now. It
// returns an error only when the event is lost: a droppable event that
// could not be sent (ErrDropped), an encoding failure, or a full queue.
func (b *Bus) Emit(ctx context.Context, ev Event) error {
	msg, err := encodeMessage(ev, b.opts.AgentID, b.opts.Encoding)
	if err != nil {
		return err
	}
	b.record(ev)
	if b.client == nil {
		return nil
	}
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	if b.queue.Len() == 0 {
		sendErr := b.send(ctx, msg)
		if sendErr == nil {
			return nil
		}
		b.noteOutage(sendErr)
		if ev.Droppable() {
			return fmt.Errorf("%w: %s: %w", ErrDropped, msg.name, sendErr)
		}
	} else if ev.Droppable() {
		// Queued lifecycle events go first; a stale heartbeat is worthless.
		return fmt.Errorf("%w: %s (%d events queued)", ErrDropped, msg.name, b.queue.Len())
	}
	if err := b.queue.Append(msg.marshalSpool()); err != nil {
		b.opts.Logger.Error().Err(err).Str("event", msg.name).Msg("event lost: cannot queue it")
		return fmt.Errorf("events: queue %s: %w", msg.name, err)
	}
	b.signal()
	return nil
}

// record logs the event and keeps it in the ring buffer.
func (b *Bus) record(ev Event) {
	body, err := json.Marshal(ev.Body())
	if err != nil {
		body = nil
	}
	b.ring.add(ev.Name(), b.opts.AgentID, body)
	level := zerolog.InfoLevel
	if ev.Droppable() {
		level = zerolog.DebugLevel
	}
	logEvent := b.opts.Logger.WithLevel(level).Str("event", ev.Name())
	if b.client == nil {
		logEvent = logEvent.RawJSON("payload", body)
	}
	logEvent.Msg("event")
}

// send writes one message: XADD, plus PUBLISH for broadcast events (only
// PUBLISH for broadcast-only ones), with the SET of the cached broadcast
// before the PUBLISH as upstream's broadcast_with_cache, in one MULTI/EXEC
// so that a failure leaves none of them behind.
func (b *Bus) send(ctx context.Context, msg message) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.SendTimeout)
	defer cancel()
	values := make([]any, len(msg.fields))
	for i, f := range msg.fields {
		values[i] = f
	}
	_, err := b.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		if !msg.broadcastOnly {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey, MaxLen: StreamMaxLen, Approx: true, Values: values})
		}
		if msg.cacheID != "" {
			pipe.Set(ctx, msg.cacheID, msg.publish, CacheTTL)
		}
		if msg.publish != nil {
			pipe.Publish(ctx, BroadcastChannel, msg.publish)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("send %s: %w", msg.name, err)
	}
	return nil
}

func (b *Bus) noteOutage(err error) {
	if !b.outage {
		b.outage = true
		b.opts.Logger.Warn().Err(err).Msg("Redis unreachable: queuing lifecycle events on disk, dropping heartbeats")
	}
}

func (b *Bus) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// redeliver drains the queue whenever woken, retrying with backoff while
// Redis is down.
func (b *Bus) redeliver(ctx context.Context) {
	defer close(b.done)
	delay := b.opts.RetryMin
	for {
		if err := b.drain(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			delay = min(delay*2, b.opts.RetryMax)
			continue
		}
		delay = b.opts.RetryMin
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
	}
}

// drain delivers queued events oldest first until the queue is empty.
func (b *Bus) drain(ctx context.Context) error {
	delivered := 0
	for {
		b.sendMu.Lock()
		record, ok := b.queue.Peek()
		if !ok {
			if b.outage && delivered > 0 {
				b.opts.Logger.Info().Int("delivered", delivered).Msg("Redis reachable again: queued events delivered")
			}
			b.outage = false
			b.sendMu.Unlock()
			return nil
		}
		msg, err := unmarshalSpool(record)
		if err != nil {
			// A record that passed its checksum but does not parse came from
			// an incompatible build; keeping it would block the queue forever.
			b.opts.Logger.Error().Err(err).Msg("dropping unreadable queued event")
		} else if err := b.send(ctx, msg); err != nil {
			b.noteOutage(err)
			b.sendMu.Unlock()
			return err
		}
		popErr := b.queue.Pop()
		b.sendMu.Unlock()
		if popErr != nil {
			return fmt.Errorf("events: pop delivered event: %w", popErr)
		}
		delivered++
	}
}

// Close stops redelivery; queued events stay on disk for the next run.
func (b *Bus) Close() error {
	if b.cancel != nil {
		b.cancel()
	}
	<-b.done
	var errs []error
	if b.queue != nil {
		errs = append(errs, b.queue.Close())
	}
	if b.client != nil {
		errs = append(errs, b.client.Close())
	}
	return errors.Join(errs...)
}
