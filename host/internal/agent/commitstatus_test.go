package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestReportCommits: a kernel being committed has kernel.<id>.commit =
// "ongoing" in the statistics DB, renewed while the commit runs and gone
// a TTL after it ends.
func TestReportCommits(t *testing.T) {
	srv := redistest.Start(t, false)
	db := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.StatisticsDB)
	t.Cleanup(func() { _ = db.Close() })
	var mu sync.Mutex
	ongoing := []string{"k-1", "k-2"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reportCommits(ctx, db, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return ongoing
		}, 100*time.Millisecond, time.Second, zerolog.Nop())
	}()
	defer func() { cancel(); <-done }()

	value := func(key string) string {
		v, err := db.Get(context.Background(), key).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		return v
	}
	testutil.Eventually(t, 30*time.Second, "both kernels to be reported", func() bool {
		return value("kernel.k-1.commit") == "ongoing" && value("kernel.k-2.commit") == "ongoing"
	})
	if ttl := db.TTL(context.Background(), "kernel.k-1.commit").Val(); ttl <= 0 || ttl > time.Second {
		t.Errorf("TTL %v, want at most 1s", ttl)
	}
	mu.Lock()
	ongoing = []string{"k-2"}
	mu.Unlock()
	// k-1 expires; k-2, set as long ago, is still there only because it
	// was renewed past its TTL.
	testutil.Eventually(t, 30*time.Second, "kernel.k-1.commit to expire after its commit ended", func() bool {
		return value("kernel.k-1.commit") == ""
	})
	if got := value("kernel.k-2.commit"); got != "ongoing" {
		t.Errorf("kernel.k-2.commit = %q while committing, want ongoing", got)
	}
}
