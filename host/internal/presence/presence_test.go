package presence

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestReport pins upstream's update_kernel_presence_batch
// (common/clients/valkey_client/valkey_schedule/client.py, 26.8.1): per
// kernel HSET presence "1", last_presence = Redis TIME seconds, EXPIRE 300,
// in DB 2, read back from a real redis-server.
func TestReport(t *testing.T) {
	srv := redistest.Start(t, false)
	live := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.LiveDB)
	t.Cleanup(func() { _ = live.Close() })
	stats := srv.Client(t, events.StatisticsDB)
	ctx := context.Background()

	var mu sync.Mutex
	kernels := []string{"k1", "k2", "k3"}
	r, err := New(Options{Redis: live, Logger: zerolog.Nop(), Kernels: func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(kernels), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := live.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Report(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Report = %d, %v; want 3 kernels", n, err)
	}
	after, _ := live.Time(ctx).Result()

	for _, kid := range kernels {
		got, err := live.HGetAll(ctx, Key(kid)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got["presence"] != "1" {
			t.Errorf("%s: hash %v, want exactly presence=1 and last_presence", kid, got)
		}
		sec, err := strconv.ParseInt(got["last_presence"], 10, 64)
		if err != nil {
			t.Errorf("%s: last_presence %q is not whole seconds: %v", kid, got["last_presence"], err)
		} else if sec < before.Unix() || sec > after.Unix() {
			t.Errorf("%s: last_presence %d outside Redis TIME %d..%d", kid, sec, before.Unix(), after.Unix())
		}
		ttl, err := live.TTL(ctx, Key(kid)).Result()
		if err != nil || ttl <= TTL-5*time.Second || ttl > TTL {
			t.Errorf("%s: TTL %v (%v), want about %v", kid, ttl, err, TTL)
		}
	}
	if n, _ := stats.Exists(ctx, Key("k1")).Result(); n != 0 {
		t.Error("presence written to DB 0; upstream writes it to the live DB (2)")
	}

	// A kernel that stops running is not refreshed: its mark ages and
	// expires, which is how the manager learns it is gone.
	if err := live.HSet(ctx, Key("k3"), "last_presence", "1").Err(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	kernels = []string{"k1", "k2"}
	mu.Unlock()
	if n, err := r.Report(ctx); err != nil || n != 2 {
		t.Fatalf("second Report = %d, %v", n, err)
	}
	if got, _ := live.HGet(ctx, Key("k3"), "last_presence").Result(); got != "1" {
		t.Errorf("k3 refreshed after it stopped running: last_presence %q", got)
	}
}

// TestReportRounds covers the rounds that write nothing or fail.
func TestReportRounds(t *testing.T) {
	srv := redistest.Start(t, false)
	live := srv.Client(t, events.LiveDB)
	ctx := context.Background()
	cases := []struct {
		description string
		kernels     KernelsFunc
		stopRedis   bool
		wantErr     bool
	}{
		{"no running kernel: nothing written, no error (upstream skips the batch)",
			func(context.Context) ([]string, error) { return nil, nil }, false, false},
		{"the kernel list fails: the round fails",
			func(context.Context) ([]string, error) { return nil, errors.New("docker down") }, false, true},
		{"Redis is down: the round fails",
			func(context.Context) ([]string, error) { return []string{"k1"}, nil }, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if tc.stopRedis {
				srv.Stop(t)
			}
			client := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.LiveDB)
			defer client.Close()
			r, err := New(Options{Redis: client, Kernels: tc.kernels, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			n, err := r.Report(ctx)
			if (err != nil) != tc.wantErr || n != 0 {
				t.Fatalf("Report = %d, %v; want error %v", n, err, tc.wantErr)
			}
			if !tc.stopRedis {
				if keys, _ := live.Keys(ctx, "kernel:presence:*").Result(); len(keys) != 0 {
					t.Fatalf("keys written: %v", keys)
				}
			}
		})
	}
}

// TestRun checks that Run reports at once, again every interval, and
// returns when its context ends.
func TestRun(t *testing.T) {
	srv := redistest.Start(t, false)
	live := srv.Client(t, events.LiveDB)
	var mu sync.Mutex
	calls := 0
	r, err := New(Options{Redis: live, Interval: 20 * time.Millisecond, Logger: zerolog.Nop(),
		Kernels: func(context.Context) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return []string{"k1"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	testutil.Eventually(t, 30*time.Second, "three rounds", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls >= 3
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got, _ := live.HGet(context.Background(), Key("k1"), "presence").Result(); got != "1" {
		t.Errorf("presence = %q after Run", got)
	}
}
