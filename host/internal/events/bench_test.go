package events

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/redistest"
)

// BenchmarkEventThroughput measures events per second through the Bus
// (encoding, the on-disk outage queue's bookkeeping, one MULTI/EXEC per
// event) against a real redis-server, beside raw go-redis sending the same
// commands with the same client options in the same run; and the queue's
// own rates while Redis is down (fsync per event) and on redelivery.
func BenchmarkEventThroughput(b *testing.B) {
	srv := redistest.Start(b, false)
	ctx := context.Background()
	anycast := ExecutionStarted{SessionID: sessionA}
	broadcast := KernelTerminated{KernelID: kernelA, SessionID: sessionA, Reason: "user-requested", ExitCode: 0}
	cached := BgtaskDone{TaskID: kernelA}

	newBus := func(b *testing.B) *Bus {
		bus, err := New(ctx, Options{AgentID: testAgentID, Redis: &RedisOptions{Addr: srv.Addr}, QueueDir: b.TempDir(),
			Logger: zerolog.Nop(), RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = bus.Close() })
		return bus
	}
	perSecond := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	emitN := func(b *testing.B, ev Event) {
		bus := newBus(b)
		b.ResetTimer()
		for range b.N {
			if err := bus.Emit(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
		perSecond(b)
	}
	// rawN sends msg's commands as Bus.send does, without the Bus.
	rawN := func(b *testing.B, ev Event) {
		msg, err := encodeMessage(ev, testAgentID, EncodingArgs)
		if err != nil {
			b.Fatal(err)
		}
		client := NewRedisClient(RedisOptions{Addr: srv.Addr}, StreamDB)
		b.Cleanup(func() { _ = client.Close() })
		values := make([]any, len(msg.fields))
		for i, f := range msg.fields {
			values[i] = f
		}
		b.ResetTimer()
		for range b.N {
			_, err := client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
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
				b.Fatal(err)
			}
		}
		perSecond(b)
	}

	b.Run("bus/anycast", func(b *testing.B) { emitN(b, anycast) })
	b.Run("raw/anycast", func(b *testing.B) { rawN(b, anycast) })
	b.Run("bus/anycast+broadcast", func(b *testing.B) { emitN(b, broadcast) })
	b.Run("raw/anycast+broadcast", func(b *testing.B) { rawN(b, broadcast) })
	b.Run("bus/cached-broadcast", func(b *testing.B) { emitN(b, cached) })
	b.Run("raw/cached-broadcast", func(b *testing.B) { rawN(b, cached) })

	// Redis down: each event is appended (and fsynced) to the queue; the
	// first one pays the failed send. Then Redis back: the time until the
	// redeliverer has sent all of them.
	b.Run("outage/queue", func(b *testing.B) {
		bus := newBus(b)
		srv.Stop(b)
		defer srv.StartAgain(b)
		b.ResetTimer()
		for range b.N {
			if err := bus.Emit(ctx, broadcast); err != nil {
				b.Fatal(err)
			}
		}
		perSecond(b)
	})
	b.Run("outage/redeliver", func(b *testing.B) {
		bus := newBus(b)
		srv.Stop(b)
		for range b.N {
			if err := bus.Emit(ctx, broadcast); err != nil {
				b.Fatal(err)
			}
		}
		srv.StartAgain(b)
		b.ResetTimer()
		bus.signal()
		for bus.QueueDepth() > 0 {
			time.Sleep(100 * time.Microsecond)
		}
		perSecond(b)
	})
}
