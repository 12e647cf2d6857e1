package etcdstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// managerUp is the value a manager writes at nodes/manager/{instance-id}.
const managerUp = "up"

// DefaultManagerWaitReminder is how often WaitForManager repeats its log
// line while no manager is up.
const DefaultManagerWaitReminder = 30 * time.Second

// watchRetryDelay is upstream's watch_reconnect_intvl.
const watchRetryDelay = 500 * time.Millisecond

// WaitForManager blocks until some global nodes/manager/* key holds "up",
// using a watch that starts right after the initial read so no change is
// missed. It returns ctx's error when ctx ends first. reminder (0 means
// DefaultManagerWaitReminder) spaces the "still waiting" log lines.
func (c *Client) WaitForManager(ctx context.Context, reminder time.Duration) error {
	if reminder <= 0 {
		reminder = DefaultManagerWaitReminder
	}
	prefix := c.mangle("nodes/manager/")
	c.log.Info().Msg("detecting the manager")
	waitingSince := time.Now()
	for {
		resp, err := c.etcd.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("etcdstore: read %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == managerUp {
				c.log.Info().Str("key", string(kv.Key)).Msg("detected at least one manager running")
				return nil
			}
		}
		c.log.Warn().Str("prefix", prefix).Msg("watching etcd to wait for the manager being available")
		found, err := c.watchForManager(ctx, prefix, resp.Header.Revision+1, reminder, waitingSince)
		if err != nil {
			return err
		}
		if found {
			return nil
		}
		// The watch ended without an error from ctx (compaction, lost
		// leader): pause as upstream does, read again and resume from the
		// new revision.
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdstore: waiting for the manager: %w", ctx.Err())
		case <-time.After(watchRetryDelay):
		}
	}
}

func (c *Client) watchForManager(ctx context.Context, prefix string, fromRev int64, reminder time.Duration, waitingSince time.Time) (bool, error) {
	watchCtx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := c.etcd.Watch(watchCtx, prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev))
	ticker := time.NewTicker(reminder)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("etcdstore: waiting for the manager: %w", ctx.Err())
		case <-ticker.C:
			c.log.Warn().Dur("waited", time.Since(waitingSince).Round(time.Second)).
				Msg("still waiting for a manager to register in etcd")
		case resp, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return false, fmt.Errorf("etcdstore: waiting for the manager: %w", ctx.Err())
				}
				return false, nil
			}
			if err := resp.Err(); err != nil {
				c.log.Warn().Err(err).Msg("manager watch interrupted; reading again")
				return false, nil
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut && string(ev.Kv.Value) == managerUp {
					c.log.Info().Str("key", string(ev.Kv.Key)).Msg("detected at least one manager running")
					return true, nil
				}
			}
		}
	}
}
