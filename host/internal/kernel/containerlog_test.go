package kernel_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/containerlog"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/redistest"
)

// Destroying a kernel stores its container's log for the manager before
// the container is removed, as upstream's clean_kernel does
// (agent/docker/agent.py): containerlog.{cid} in DB 6, then
// do_sync_kernel_logs(kernel_id, container_id) (agent/agent.py
// collect_logs), read back as the 26.8 manager reads them.
func TestDestroyStoresTheContainerLog(t *testing.T) {
	e := newEnv(t)
	srv := redistest.Start(t, false)
	ctx := context.Background()
	bus, err := events.New(ctx, events.Options{
		AgentID: e.agentID, Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: events.EncodingArgs,
		QueueDir: t.TempDir(), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	reader := managertest.NewReader(t, srv.Addr)
	logDB := srv.Client(t, redisconn.RoleContainerLog.DB())
	collector := containerlog.New(containerlog.Options{Docker: e.docker, Redis: logDB, Bus: bus, Logger: zerolog.Nop()})
	m := e.manager(t, func(cfg *kernel.Config) {
		cfg.BeforeRemove = func(ctx context.Context, kernelID, containerID string) {
			if err := collector.Collect(ctx, kernelID, containerID); err != nil {
				t.Errorf("collect: %v", err)
			}
		}
	})
	start(t, m)
	// A UUID as the manager sends, random so that runs sharing a daemon
	// never clash on the container name.
	kernelID := fmt.Sprintf("0b7c2d1e-3f4a-4b5c-8d6e-%012x", rand.Uint64()>>16)
	// uid 0 runs the code as root (as upstream's entrypoint does): only
	// root may open the fds of the runner, PID 1 under Docker's init and
	// root itself. What the code writes there is the container's log.
	req := request(kernelID)
	root := 0
	req.UID = &root
	created := create(t, m, req)
	res := run(t, m, kernelID, "r1", runnerclient.ModeQuery, "echo known-line-1 > /proc/1/fd/1; echo known-line-2 > /proc/1/fd/2")
	if res.Status != runnerclient.StatusFinished {
		t.Fatalf("run: %+v", res)
	}
	if _, err := m.Destroy(ctx, kernelID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("container still there after destroy: %v", err)
	}

	key := containerlog.Key(created.ContainerID)
	entries, err := logDB.LRange(ctx, key, 0, -1).Result()
	if err != nil || len(entries) == 0 {
		t.Fatalf("%s holds %d entries (%v)", key, len(entries), err)
	}
	var log strings.Builder
	for _, entry := range entries {
		var data struct {
			CompressType string `json:"compress_type"`
			Content      string `json:"content"`
		}
		if err := json.Unmarshal([]byte(entry), &data); err != nil || data.CompressType != "zlib" {
			t.Fatalf("entry %.80s: %v", entry, err)
		}
		compressed, err := base64.StdEncoding.DecodeString(data.Content)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zlib.NewReader(bytes.NewReader(compressed))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		log.Write(raw)
	}
	// The kernel's terminal (Tty, as upstream's kernels have) ends lines
	// with CRLF in the log, as it does upstream.
	for _, want := range []string{"known-line-1\r\n", "known-line-2\r\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the stored log lacks %q:\n%s", want, log.String())
		}
	}
	if ttl, err := logDB.TTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("TTL %v (%v), want 0 < TTL <= 3600 s", ttl, err)
	}
	ev := reader.WaitStream(5*time.Second, managertest.Named("do_sync_kernel_logs"))
	if ev.Str(0) != kernelID || ev.Str(1) != created.ContainerID {
		t.Errorf("do_sync_kernel_logs%v, want (%s, %s)", ev.Args, kernelID, created.ContainerID)
	}
}
