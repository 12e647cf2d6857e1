package containerlog_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/containerlog"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/redistest"
)

const kernelID = "5e1f0a4c-1b2d-4c3e-9f80-123456789abc"

// finishedContainer runs script in the busybox image until it exits and
// returns the container's ID; the container is removed at cleanup.
func finishedContainer(t *testing.T, docker *client.Client, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	image := kerneltest.BuildBusybox(t, docker)
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: []string{"/bin/sh", "-c", script}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	wait := docker.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatal(err)
	}
	return created.ID
}

// ReadBack decodes containerlog.{cid} as the manager's handler does
// (ContainerLogData.deserialize/get_content, common/log/types.py) and
// returns each chunk's raw bytes.
func readBack(t *testing.T, entries []string) [][]byte {
	t.Helper()
	var chunks [][]byte
	for _, e := range entries {
		if !strings.HasPrefix(e, `{"compress_type": "zlib", "content": "`) {
			t.Errorf("entry %.60s... is not json.dumps of ContainerLogData", e)
		}
		var data struct {
			CompressType string `json:"compress_type"`
			Content      string `json:"content"`
		}
		if err := json.Unmarshal([]byte(e), &data); err != nil {
			t.Fatal(err)
		}
		if data.CompressType != "zlib" {
			t.Fatalf("compress_type %q", data.CompressType)
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
		chunks = append(chunks, raw)
	}
	return chunks
}

// A finished container's log reaches containerlog.{cid} in DB 6 as
// upstream's collect_logs pushes it (agent/agent.py: the raw log cut into
// chunk-size pieces, each zlib-compressed; RPUSH and EXPIRE 3600,
// valkey_container_log/client.py), followed by do_sync_kernel_logs.
func TestCollect(t *testing.T) {
	docker := kerneltest.Docker(t)
	srv := redistest.Start(t, false)
	// stdout and stderr interleaved; seq makes the log longer than 64 KiB.
	// Docker orders the two streams by the time its log driver received
	// each line, so a pause keeps the stderr line after the first stdout
	// one: without it the order varied from run to run.
	cid := finishedContainer(t, docker, "echo first line; sleep 0.2; echo to stderr >&2; sleep 0.2; seq 1 20000; echo last line")
	var want strings.Builder
	want.WriteString("first line\nto stderr\n")
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	want.WriteString("last line\n")

	logDB := srv.Client(t, redisconn.RoleContainerLog.DB())
	cases := []struct {
		description string
		chunkSize   int
	}{
		{"upstream's 64 KiB chunks", 0},
		{"small chunks", 1000},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx := context.Background()
			if err := logDB.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			reader := managertest.NewReader(t, srv.Addr)
			bus, err := events.New(ctx, events.Options{
				AgentID: "i-log", Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: events.EncodingArgs,
				QueueDir: t.TempDir(), Logger: zerolog.Nop(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			c := containerlog.New(containerlog.Options{Docker: docker, Redis: logDB, Bus: bus, ChunkSize: tc.chunkSize, Logger: zerolog.Nop()})
			if err := c.Collect(ctx, kernelID, cid); err != nil {
				t.Fatal(err)
			}
			entries, err := logDB.LRange(ctx, containerlog.Key(cid), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			size := tc.chunkSize
			if size == 0 {
				size = containerlog.DefaultChunkSize
			}
			chunks := readBack(t, entries)
			if wantChunks := (want.Len() + size - 1) / size; len(chunks) != wantChunks {
				t.Errorf("%d chunks, want %d", len(chunks), wantChunks)
			}
			for i, ch := range chunks[:len(chunks)-1] {
				if len(ch) != size {
					t.Errorf("chunk %d holds %d raw bytes, want %d", i, len(ch), size)
				}
			}
			if got := string(bytes.Join(chunks, nil)); got != want.String() {
				t.Errorf("the chunks decode to %d bytes starting %.40q, want %d bytes starting %.40q", len(got), got, want.Len(), want.String())
			}
			ttl, err := logDB.TTL(ctx, containerlog.Key(cid)).Result()
			if err != nil || ttl <= 0 || ttl > time.Hour {
				t.Errorf("TTL %v (%v), want 0 < TTL <= 3600 s", ttl, err)
			}
			ev := reader.WaitStream(5*time.Second, managertest.Named("do_sync_kernel_logs"))
			if ev.Str(0) != kernelID || ev.Str(1) != cid {
				t.Errorf("do_sync_kernel_logs%v, want (%s, %s)", ev.Args, kernelID, cid)
			}
		})
	}
}

// A container already gone gives an error and no do_sync_kernel_logs.
func TestCollectMissingContainer(t *testing.T) {
	docker := kerneltest.Docker(t)
	srv := redistest.Start(t, false)
	reader := managertest.NewReader(t, srv.Addr)
	bus, err := events.New(context.Background(), events.Options{
		AgentID: "i-log", Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: events.EncodingArgs,
		QueueDir: t.TempDir(), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c := containerlog.New(containerlog.Options{Docker: docker, Redis: srv.Client(t, redisconn.RoleContainerLog.DB()), Bus: bus, Logger: zerolog.Nop()})
	if err := c.Collect(context.Background(), kernelID, "no-such-container-0123"); err == nil {
		t.Fatal("no error for a missing container")
	}
	if evs := reader.Stream(); len(evs) != 0 {
		t.Errorf("events sent: %v", managertest.Names(evs))
	}
}
