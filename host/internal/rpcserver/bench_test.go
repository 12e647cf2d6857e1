package rpcserver

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/baiagent/baiagent/host/internal/callosum"
)

// BenchmarkPingSequential measures one ping at a time over loopback TCP and
// reports p50/p99 latency.
func BenchmarkPingSequential(b *testing.B) {
	ts := startServer(b, Options{}, nil)
	c := dial(b, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := context.Background()
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Invoke(ctx, "ping", []any{"ping"}, nil); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}

func benchmarkPingInFlight(b *testing.B, inFlight int) {
	ts := startServer(b, Options{}, nil)
	c := dial(b, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := context.Background()
	work := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if _, err := c.Invoke(ctx, "ping", []any{"ping"}, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pings/s")
}

func BenchmarkPingInFlight1(b *testing.B)  { benchmarkPingInFlight(b, 1) }
func BenchmarkPingInFlight32(b *testing.B) { benchmarkPingInFlight(b, 32) }

// BenchmarkZMQEchoFloor is the floor under BenchmarkPingSequential on the
// same machine in the same run: a bare pebbe/zmq4 DEALER and a ROUTER that
// echoes, no callosum encoding, no handler.
func BenchmarkZMQEchoFloor(b *testing.B) {
	// A context of its own: Term makes the echo goroutine's blocking
	// receive return, and that goroutine closes the socket it owns.
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	router, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		b.Fatal(err)
	}
	_ = router.SetLinger(0)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	endpoint, _ := router.GetLastEndpoint()
	go func() {
		defer router.Close()
		for {
			msg, err := router.RecvMessageBytes(0)
			if err != nil {
				return
			}
			if _, err := router.SendMessage(msg); err != nil {
				return
			}
		}
	}()
	dealer, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		b.Fatal(err)
	}
	_ = dealer.SetLinger(0)
	defer func() {
		dealer.Close()
		_ = zctx.Term()
	}()
	if err := dealer.Connect(endpoint); err != nil {
		b.Fatal(err)
	}
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := dealer.SendMessage("UPPER", "h", "b"); err != nil {
			b.Fatal(err)
		}
		if _, err := dealer.RecvMessageBytes(0); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkZMQEchoFloorInFlight32 is the floor under BenchmarkPingInFlight32
// in the same run: a bare pebbe/zmq4 DEALER keeping 32 requests of three
// frames in flight against a ROUTER that echoes them, one goroutine on each
// side, no callosum encoding, no handler, no waiter bookkeeping.
func BenchmarkZMQEchoFloorInFlight32(b *testing.B) {
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	router, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		b.Fatal(err)
	}
	_ = router.SetLinger(0)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	endpoint, _ := router.GetLastEndpoint()
	go func() {
		defer router.Close()
		for {
			msg, err := router.RecvMessageBytes(0)
			if err != nil {
				return
			}
			if _, err := router.SendMessage(msg); err != nil {
				return
			}
		}
	}()
	defer func() { _ = zctx.Term() }()
	pipelined(b, zctx, endpoint, 32, [][]byte{[]byte("UPPER"), []byte("h"), []byte("b")})
}

// BenchmarkServerInFlight32 is our server alone: the bare DEALER of
// BenchmarkZMQEchoFloorInFlight32 keeps 32 callosum ping requests in flight
// against the RPC server, so our client's share of BenchmarkPingInFlight32
// is left out.
func BenchmarkServerInFlight32(b *testing.B) {
	ts := startServer(b, Options{}, nil)
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = zctx.Term() }()
	payload, err := callosum.EncodeEnvelope([]any{"ping"}, map[string]any{})
	if err != nil {
		b.Fatal(err)
	}
	header := callosum.Header{Type: callosum.TypeFunction, Method: "ping"}
	request := [][]byte{[]byte(callosum.FrameUpper), header.Encode(), callosum.EncodeBody(callosum.MetaFunction, payload, false)}
	pipelined(b, zctx, ts.srv.Endpoint(), 32, request)
}

// pipelined connects a DEALER to endpoint and sends b.N copies of request,
// keeping window of them unanswered, from one goroutine; it reports the
// rate of answers.
func pipelined(b *testing.B, zctx *zmq.Context, endpoint string, window int, request [][]byte) {
	dealer, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		b.Fatal(err)
	}
	_ = dealer.SetLinger(0)
	defer dealer.Close()
	if err := dealer.Connect(endpoint); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	sent, received := 0, 0
	for ; sent < b.N && sent < window; sent++ {
		if _, err := dealer.SendMessage(request); err != nil {
			b.Fatal(err)
		}
	}
	for received < b.N {
		if _, err := dealer.RecvMessageBytes(0); err != nil {
			b.Fatal(err)
		}
		received++
		if sent < b.N {
			if _, err := dealer.SendMessage(request); err != nil {
				b.Fatal(err)
			}
			sent++
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pings/s")
}
