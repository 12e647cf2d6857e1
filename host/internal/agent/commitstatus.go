package agent

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Upstream's commit status report: every 7 s, keys that expire after 13 s
// (agent.py COMMIT_STATUS_EXPIRE), so a crashed agent's marks vanish.
const (
	commitStatusInterval = 7 * time.Second
	commitStatusTTL      = 13 * time.Second
)

// reportCommits writes kernel.<id>.commit = "ongoing" with a TTL into the
// statistics DB for each kernel with a commit in progress, as upstream's
// report_all_kernel_commit_status_map; the manager reads these keys to
// show that a session is being committed. It runs until ctx ends.
func reportCommits(ctx context.Context, db *redis.Client, ongoing func() []string, interval, ttl time.Duration, log zerolog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if ids := ongoing(); len(ids) > 0 {
			pipe := db.Pipeline()
			for _, id := range ids {
				pipe.Set(ctx, "kernel."+id+".commit", "ongoing", ttl)
			}
			if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Strs("kernels", ids).Msg("commit status not reported")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
