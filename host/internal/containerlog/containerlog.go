// Package containerlog hands a finished kernel's container log to the
// manager as upstream's clean_kernel and collect_logs do
// (agent/docker/agent.py, agent/agent.py): before the container is
// removed, its stdout and stderr are read from Docker, cut into chunks,
// each chunk zlib-compressed and pushed to containerlog.{container_id} in
// Redis DB 6, and do_sync_kernel_logs tells the manager to move them into
// kernels.container_log.
package containerlog

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/dockerlog"
	"github.com/baiagent/baiagent/host/internal/events"
)

const (
	// DefaultChunkSize is container-logs.chunk-size's default (64 KiB).
	DefaultChunkSize = 64 << 10
	// TTL is the expiry set on the key with every push.
	TTL = time.Hour
	// DefaultTimeout bounds one collection, as upstream's timeout(60).
	DefaultTimeout = 60 * time.Second
)

// Key is the Redis key of a container's log chunks.
func Key(containerID string) string { return "containerlog." + containerID }

// Emitter is the part of the event bus a Collector needs.
type Emitter interface {
	Emit(ctx context.Context, ev events.Event) error
}

// Options configure a Collector.
type Options struct {
	Docker *client.Client
	// Redis is a client of the container_log role (DB 6).
	Redis *redis.Client
	Bus   Emitter
	// ChunkSize is how many bytes of the raw log go into one entry
	// (DefaultChunkSize if 0).
	ChunkSize int
	// Timeout bounds one collection (DefaultTimeout if 0).
	Timeout time.Duration
	Logger  zerolog.Logger
}

// Collector collects the logs of finished kernels.
type Collector struct{ opts Options }

// New returns a Collector.
func New(opts Options) *Collector {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Collector{opts: opts}
}

// Collect reads the container's log (stdout and stderr interleaved, as
// docker logs shows them), pushes it and then sends do_sync_kernel_logs.
// Nothing is sent when the log cannot be read or stored: the manager
// would find nothing to sync. The container must still exist.
func (c *Collector) Collect(ctx context.Context, kernelID, containerID string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	// Follow is not needed: clean-up runs after the container stopped, and
	// without it a still running container cannot hold the clean-up.
	rc, err := c.opts.Docker.ContainerLogs(ctx, containerID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s is already gone: %w", containerID, err)
		}
		return fmt.Errorf("read the log of container %s: %w", containerID, err)
	}
	defer rc.Close()
	w := &chunker{ctx: ctx, c: c, key: Key(containerID)}
	if err := dockerlog.Copy(w, rc); err != nil {
		return fmt.Errorf("read the log of container %s: %w", containerID, errors.Join(err, w.err))
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := c.opts.Bus.Emit(ctx, events.DoSyncKernelLogs{KernelID: kernelID, ContainerID: containerID}); err != nil {
		return fmt.Errorf("do_sync_kernel_logs: %w", err)
	}
	c.opts.Logger.Debug().Str("kernel", kernelID).Str("container", containerID).Int64("bytes", w.total).Int("chunks", w.chunks).Msg("container log stored for the manager")
	return nil
}

// chunker cuts the raw log into ChunkSize pieces and pushes each full one
// at once; upstream splits the raw log first and compresses each piece.
type chunker struct {
	ctx    context.Context
	c      *Collector
	key    string
	buf    []byte
	total  int64
	chunks int
	err    error // the first push error; later writes fail with it
}

func (w *chunker) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	w.total += int64(len(p))
	size := w.c.opts.ChunkSize
	for len(w.buf) >= size {
		if w.err = w.c.push(w.ctx, w.key, w.buf[:size]); w.err != nil {
			return 0, w.err
		}
		w.chunks++
		w.buf = append(w.buf[:0], w.buf[size:]...)
	}
	return len(p), nil
}

// flush pushes the last, partial chunk.
func (w *chunker) flush() error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	if err := w.c.push(w.ctx, w.key, w.buf); err != nil {
		return err
	}
	w.chunks++
	w.buf = w.buf[:0]
	return nil
}

// Entry is one list item: ContainerLogData.serialize()
// (common/log/types.py), json.dumps with Python's default separators.
func Entry(raw []byte) ([]byte, error) {
	var compressed bytes.Buffer
	zw := zlib.NewWriter(&compressed) // level 6, as Python's zlib.compress
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compress log chunk: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress log chunk: %w", err)
	}
	// base64 needs no JSON escaping.
	return []byte(`{"compress_type": "zlib", "content": "` + base64.StdEncoding.EncodeToString(compressed.Bytes()) + `"}`), nil
}

// push appends one chunk and renews the key's expiry, as upstream's
// enqueue_container_logs (RPUSH then EXPIRE 3600 in one batch).
func (c *Collector) push(ctx context.Context, key string, raw []byte) error {
	entry, err := Entry(raw)
	if err != nil {
		return err
	}
	_, err = c.opts.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, entry)
		p.Expire(ctx, key, TTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("push log chunk to %s: %w", key, err)
	}
	return nil
}
