package rpcserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/callosum"
)

// The benchmarks' servers run in a child process (this test binary again,
// with benchServerEnv naming what to serve), because a manager and an agent
// are two processes: in one process both sides share one Go scheduler and
// one network poller, and the numbers then describe neither.
const benchServerEnv = "BAIAGENT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if kind := os.Getenv(benchServerEnv); kind != "" {
		if err := serveBench(kind); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveBench is the child: it serves kind ("rpc" is our server, "echo" a
// bare ROUTER that sends every message back), prints its endpoint, and
// exits when its stdin closes.
func serveBench(kind string) error {
	var endpoint string
	switch kind {
	case "rpc":
		srv, err := New(Options{
			Endpoint: "tcp://127.0.0.1:*", AgentID: "i-bench",
			PortRangeMin: 30000, PortRangeMax: 30001, Logger: zerolog.Nop(),
		}, Deps{Kernels: NewMemoryKernels()})
		if err != nil {
			return err
		}
		endpoint = srv.Endpoint()
		go func() { _ = srv.Serve(context.Background()) }()
	case "echo":
		zctx, err := zmq.NewContext()
		if err != nil {
			return err
		}
		router, err := zctx.NewSocket(zmq.ROUTER)
		if err != nil {
			return err
		}
		if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
			return err
		}
		if endpoint, err = router.GetLastEndpoint(); err != nil {
			return err
		}
		go func() {
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
	default:
		return fmt.Errorf("%s=%q: want rpc or echo", benchServerEnv, kind)
	}
	fmt.Println(endpoint)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// startBenchServer starts a child serving kind and returns its endpoint.
func startBenchServer(b *testing.B, kind string) string {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchServerEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench server %s: %v", kind, err)
	}
	return strings.TrimSpace(line)
}

// BenchmarkPingSequential measures one ping at a time, our client to our
// server over loopback TCP, and reports p50/p99 latency.
func BenchmarkPingSequential(b *testing.B) {
	c := dial(b, startBenchServer(b, "rpc"), callosum.ClientOptions{})
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
	reportLatencies(b, latencies)
}

func benchmarkPingInFlight(b *testing.B, inFlight int) {
	c := dial(b, startBenchServer(b, "rpc"), callosum.ClientOptions{})
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
// same machine in the same run: a bare pebbe/zmq4 DEALER with blocking
// receives and a ROUTER that echoes, no callosum encoding, no handler.
func BenchmarkZMQEchoFloor(b *testing.B) {
	sequential(b, startBenchServer(b, "echo"), func(uint64) [][]byte {
		return [][]byte{[]byte("UPPER"), []byte("h"), []byte("b")}
	})
}

// BenchmarkServerSequential is our server alone, one call at a time: the
// bare DEALER of BenchmarkZMQEchoFloor sends callosum ping requests, so our
// client's share of BenchmarkPingSequential is left out.
func BenchmarkServerSequential(b *testing.B) {
	sequential(b, startBenchServer(b, "rpc"), func(seq uint64) [][]byte { return pingRequest(b, seq) })
}

// BenchmarkServerSequentialGoroutine is BenchmarkServerSequential with a
// method that runs on a goroutine of its own (check_creating), as every
// method with I/O does, where ping is answered on the socket's goroutine: the
// difference is the cost of handing a call to a handler and its reply back.
func BenchmarkServerSequentialGoroutine(b *testing.B) {
	sequential(b, startBenchServer(b, "rpc"), func(seq uint64) [][]byte {
		return callRequest(b, "check_creating", []any{"no-such-kernel"}, seq)
	})
}

// BenchmarkZMQEchoFloorInFlight32 is the floor under BenchmarkPingInFlight32
// in the same run: a bare pebbe/zmq4 DEALER keeping 32 requests of three
// frames in flight against a ROUTER that echoes them, no callosum encoding,
// no handler, no waiter bookkeeping.
func BenchmarkZMQEchoFloorInFlight32(b *testing.B) {
	pipelined(b, startBenchServer(b, "echo"), 32, [][]byte{[]byte("UPPER"), []byte("h"), []byte("b")})
}

// BenchmarkServerInFlight32 is our server alone: the bare DEALER of
// BenchmarkZMQEchoFloorInFlight32 keeps 32 callosum ping requests in flight
// against the RPC server, so our client's share of BenchmarkPingInFlight32
// is left out.
func BenchmarkServerInFlight32(b *testing.B) {
	pipelined(b, startBenchServer(b, "rpc"), 32, pingRequest(b, 0))
}

// pingRequest is a callosum ping request's frames after the DEALER's routing.
func pingRequest(b *testing.B, seq uint64) [][]byte {
	return callRequest(b, "ping", []any{"ping"}, seq)
}

// callRequest is a callosum request's frames after the DEALER's routing.
func callRequest(b *testing.B, method string, args []any, seq uint64) [][]byte {
	payload, err := callosum.EncodeEnvelope(args, map[string]any{})
	if err != nil {
		b.Fatal(err)
	}
	header := callosum.Header{Type: callosum.TypeFunction, Method: method, Seq: seq}
	return [][]byte{[]byte(callosum.FrameUpper), header.Encode(), callosum.EncodeBody(callosum.MetaFunction, payload, false)}
}

// bareDealer is a pebbe/zmq4 DEALER connected to endpoint, in a context of
// its own; both go at the benchmark's end.
func bareDealer(b *testing.B, endpoint string) *zmq.Socket {
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	dealer, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		b.Fatal(err)
	}
	_ = dealer.SetLinger(0)
	b.Cleanup(func() {
		dealer.Close()
		_ = zctx.Term()
	})
	if err := dealer.Connect(endpoint); err != nil {
		b.Fatal(err)
	}
	return dealer
}

// sequential sends b.N requests from a bare DEALER, one at a time, each
// waited for with a blocking receive, and reports p50/p99 latency.
func sequential(b *testing.B, endpoint string, request func(seq uint64) [][]byte) {
	dealer := bareDealer(b, endpoint)
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := dealer.SendMessage(request(uint64(i))); err != nil {
			b.Fatal(err)
		}
		if _, err := dealer.RecvMessageBytes(0); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, latencies)
}

// pipelined sends b.N copies of request from a bare DEALER, keeping window
// of them unanswered, from one goroutine; it reports the rate of answers.
func pipelined(b *testing.B, endpoint string, window int, request [][]byte) {
	dealer := bareDealer(b, endpoint)
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

// reportLatencies reports the p50 and p99 of latencies.
func reportLatencies(b *testing.B, latencies []time.Duration) {
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}
