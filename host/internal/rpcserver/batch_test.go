package rpcserver

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/session"
)

// memBatchStore is a BatchStore without scratch dirs.
type memBatchStore struct {
	mu   sync.Mutex
	jobs map[string]kernel.BatchJob
}

func (s *memBatchStore) SaveBatchJob(kid string, job kernel.BatchJob) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[kid] = job
	return nil
}

func (s *memBatchStore) LoadBatchJob(kid string) (kernel.BatchJob, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.jobs[kid]
	return job, ok, nil
}

func (s *memBatchStore) AttachRun(context.Context, string, string) error { return nil }

func (s *memBatchStore) RunnerStatus(context.Context, string) (protocol.Status, error) {
	return protocol.Status{}, nil
}

type recordedEvents struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recordedEvents) Emit(_ context.Context, ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// trigger_batch_execution's arguments as agent/server.py takes them: the
// manager sends (str(session_id), str(kernel_id), startup_command or "",
// float(batch_timeout) or None) (manager/sokovan/scheduler/hooks/status.py).
func TestTriggerBatchExecutionArguments(t *testing.T) {
	svc := newFakeKernels()
	ports, err := portpool.New(30000, 30010, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	km, _ := kernelServer(t, svc, ports, nil)
	sid := randomUUID()
	created, err := svc.Create(context.Background(), kernel.CreateRequest{KernelID: randomUUID(), SessionID: sid, Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	kid := created.KernelID
	store := &memBatchStore{jobs: map[string]kernel.BatchJob{}}
	evs := &recordedEvents{}
	srv, err := New(Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-test", PortRangeMin: 30000, PortRangeMax: 30010, Logger: zerolog.Nop()},
		Deps{Kernels: km, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	batches := session.NewBatches(km.Service, store, session.BatchOptions{Events: evs, Logger: zerolog.Nop()})
	RegisterBatchMethods(srv, batches)
	serveUntilCleanup(t, srv, batches.Close)
	c := dial(t, srv.Endpoint(), callosum.ClientOptions{})
	ghost := randomUUID()

	cases := []struct {
		description string
		args        []any
		wantErr     string // FAILURE name; "" for None
		wantText    string
		wantJob     string // the kernel whose job is recorded, "" for none
	}{
		{description: "the manager's call with no timeout", args: []any{sid, kid, "true", nil}, wantJob: kid},
		{description: "a float timeout", args: []any{sid, kid, "true", 30.0}, wantJob: kid},
		{description: "an unknown kernel answers None and records nothing", args: []any{sid, ghost, "true", nil}},
		{description: "a timeout that is not a number", args: []any{sid, kid, "true", "1"}, wantErr: "TypeError", wantText: "'timeout'"},
		{description: "a code that is not a str", args: []any{sid, kid, 5, nil}, wantErr: "TypeError", wantText: "'code'"},
		{description: "a session id that is not a UUID", args: []any{"x", kid, "true", nil}, wantErr: "ValueError", wantText: "session_id"},
		{description: "a missing argument", args: []any{sid, kid, "true"}, wantErr: "TypeError", wantText: "timeout"},
	}
	for _, tc := range cases {
		store.mu.Lock()
		clear(store.jobs)
		store.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := invokeRaw(ctx, c, "trigger_batch_execution", tc.args, nil)
		cancel()
		if tc.wantErr != "" {
			wantFailure(t, tc.description, got, err, tc.wantErr, tc.wantText)
			continue
		}
		if err != nil || got != nil {
			t.Errorf("%s: got %#v, %v; want None", tc.description, got, err)
			continue
		}
		batches.Wait()
		job, ok, _ := store.LoadBatchJob(tc.wantJob)
		if tc.wantJob == "" {
			if len(store.jobs) != 0 {
				t.Errorf("%s: jobs recorded: %v", tc.description, store.jobs)
			}
			continue
		}
		if !ok || job.SessionID != sid || !job.Reported {
			t.Errorf("%s: job %+v (%v), want session %s reported", tc.description, job, ok, sid)
		}
	}
	// The fake kernel's execute finishes with 0 at once: one
	// session_success per triggered job.
	evs.mu.Lock()
	defer evs.mu.Unlock()
	var results int
	for _, ev := range evs.evs {
		if ev.Name() == "session_success" {
			results++
		}
	}
	if results != 2 {
		t.Errorf("%d session_success events, want 2: %v", results, evs.evs)
	}
}
