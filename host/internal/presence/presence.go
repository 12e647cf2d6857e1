// Package presence tells the manager which kernels are alive: every minute
// it marks each running kernel in Redis DB 2 (the "live" database) with
// kernel:presence:{kernel_id}, as upstream's KernelPresenceObserver
// (agent/observer/kernel_presence.py) through ValkeyScheduleClient
// .update_kernel_presence_batch (common/clients/valkey_client/
// valkey_schedule/client.py). The manager's check_stale_kernels treats a
// kernel whose mark is missing or older than two minutes as stale.
package presence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Upstream's observe_interval(), timeout() and KERNEL_HEALTH_TTL_SEC.
const (
	DefaultInterval = 60 * time.Second
	DefaultTimeout  = 10 * time.Second
	TTL             = 300 * time.Second
)

// Key is the DB 2 hash of one kernel's presence.
func Key(kernelID string) string { return "kernel:presence:" + kernelID }

// KernelsFunc lists the kernels whose containers are running now.
type KernelsFunc func(ctx context.Context) ([]string, error)

// Options configures a Reporter.
type Options struct {
	// Redis is a client of the live database (DB 2).
	Redis   redis.Cmdable
	Kernels KernelsFunc
	// Interval and Timeout default to upstream's 60 s and 10 s.
	Interval time.Duration
	Timeout  time.Duration
	Logger   zerolog.Logger
}

// Reporter writes the presence marks.
type Reporter struct {
	opts Options
}

// New returns a Reporter; call Run, or Report for one round.
func New(opts Options) (*Reporter, error) {
	if opts.Redis == nil || opts.Kernels == nil {
		return nil, errors.New("presence: Redis and Kernels are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Reporter{opts: opts}, nil
}

// Run reports at once and then every Interval until ctx ends. A failed
// round is logged; the next one goes on, as upstream's observer runner.
func (r *Reporter) Run(ctx context.Context) {
	ticker := time.NewTicker(r.opts.Interval)
	defer ticker.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		n, err := r.Report(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Logger.Warn().Err(err).Msg("kernel presence not reported")
		case err == nil:
			r.opts.Logger.Debug().Int("kernels", n).Msg("kernel presence reported")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Report marks every running kernel once and returns how many it marked.
// The timestamp is the Redis server's TIME, in whole seconds, so that the
// manager compares it with the same clock; the writes go in one
// non-transactional pipeline, as upstream's Batch(is_atomic=False).
func (r *Reporter) Report(ctx context.Context) (int, error) {
	kernels, err := r.opts.Kernels(ctx)
	if err != nil {
		return 0, fmt.Errorf("presence: list kernels: %w", err)
	}
	if len(kernels) == 0 {
		return 0, nil
	}
	now, err := r.opts.Redis.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("presence: redis TIME: %w", err)
	}
	stamp := strconv.FormatInt(now.Unix(), 10)
	pipe := r.opts.Redis.Pipeline()
	for _, kid := range kernels {
		key := Key(kid)
		pipe.HSet(ctx, key, "presence", "1", "last_presence", stamp)
		pipe.Expire(ctx, key, TTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("presence: write %d kernels: %w", len(kernels), err)
	}
	return len(kernels), nil
}
