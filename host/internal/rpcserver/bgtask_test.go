package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redistest"
)

// TestBackgroundTaskEndsAsTheManagerReadsThem pins upstream's
// BackgroundTaskManager (common/bgtask/bgtask.py start, _observe_bgtask,
// _wrapper_task): bgtask_updated(id, 0, 0, "Task started") first, then
// bgtask_done, bgtask_failed with the error, or bgtask_cancelled("Task
// cancelled") when the task is cancelled under it, each a broadcast whose
// JSON is also cached in bgtask.{id} for at most 300 s. Read back from a
// real Redis as the 26.8 manager reads it.
func TestBackgroundTaskEndsAsTheManagerReadsThem(t *testing.T) {
	srv := redistest.Start(t, false)
	cases := []struct {
		description string
		run         func(ctx context.Context, running chan<- struct{}) error
		closeEarly  bool // Close the tasks while the task runs
		wantLast    string
		wantMessage any
	}{
		{"a task that succeeds", func(context.Context, chan<- struct{}) error { return nil },
			false, "bgtask_done", nil},
		{"a task that fails", func(context.Context, chan<- struct{}) error { return errors.New("pull failed: no such image") },
			false, "bgtask_failed", "pull failed: no such image"},
		{"a task cancelled by Close, whatever error it returns", func(ctx context.Context, running chan<- struct{}) error {
			close(running)
			<-ctx.Done()
			return fmt.Errorf("docker pull: %w", ctx.Err())
		}, true, "bgtask_cancelled", "Task cancelled"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx := context.Background()
			reader := managertest.NewReader(t, srv.Addr)
			bus, err := events.New(ctx, events.Options{AgentID: "i-test", Redis: &events.RedisOptions{Addr: srv.Addr}, QueueDir: t.TempDir(), Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			tasks := newBackgroundTasks(bus, zerolog.Nop())
			id, err := newTaskID()
			if err != nil {
				t.Fatal(err)
			}
			running := make(chan struct{})
			tasks.start(ctx, id, "test task", func(ctx context.Context) error { return tc.run(ctx, running) })
			if tc.closeEarly {
				<-running
			} else {
				tasks.Wait()
			}
			tasks.Close()

			task := id.String()
			of := func(name string) func(managertest.Event) bool {
				return func(ev managertest.Event) bool { return ev.Name == name && ev.Str(0) == task }
			}
			started := reader.WaitBroadcast(5*time.Second, of("bgtask_updated"))
			if started.Int(1) != 0 || started.Int(2) != 0 || started.Str(3) != "Task started" {
				t.Errorf("bgtask_updated args %#v, want (id, 0, 0, \"Task started\") with int progress", started.Args)
			}
			last := reader.WaitBroadcast(5*time.Second, of(tc.wantLast))
			if len(last.Args) != 2 || last.Args[1] != tc.wantMessage {
				t.Errorf("%s args %#v, want message %#v", tc.wantLast, last.Args, tc.wantMessage)
			}
			cached, ttl, err := reader.BgtaskCache(ctx, task)
			if err != nil {
				t.Fatal(err)
			}
			if cached.Name != tc.wantLast || ttl <= 0 || ttl > events.CacheTTL {
				t.Errorf("bgtask.%s holds %s with TTL %v, want %s with 0 < TTL <= %v", task, cached.Name, ttl, tc.wantLast, events.CacheTTL)
			}
			if n := len(reader.Broadcasts()); n != 2 {
				t.Errorf("%d broadcasts %v, want bgtask_updated and %s", n, managertest.Names(reader.Broadcasts()), tc.wantLast)
			}
		})
	}
}
