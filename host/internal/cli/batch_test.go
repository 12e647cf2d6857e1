package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// runBatch starts a batch session's kernel with `baiagent kernel run --type
// batch` (create_kernels with session_type batch, then
// trigger_batch_execution as the manager's hooks/status.py calls it).
func (v *managerView) runBatch(t *testing.T, command string, timeout string) (kernelID, sessionID string) {
	t.Helper()
	args := []string{"kernel", "run", "--type", "batch", "--startup-command", command, "--addr", "tcp://" + v.rpcAddr,
		"--image", kerneltest.BusyboxImage, "--cpu", "1", "--mem", "64m"}
	if timeout != "" {
		args = append(args, "--batch-timeout", timeout)
	}
	_, stderr, err := run(t, testEnv(t, nil), args...)
	m := keptKernel.FindStringSubmatch(stderr)
	if err != nil || m == nil {
		t.Fatalf("kernel run --type batch: %v\n%s\nagent log:\n%s", err, stderr, v.logs.String())
	}
	return m[1], m[2]
}

func isSessionResult(sessionID string) func(managertest.Event) bool {
	return func(ev managertest.Event) bool {
		return (ev.Name == "session_success" || ev.Name == "session_failure") && ev.Str(0) == sessionID
	}
}

// result waits for the session's result in the stream and on events_all
// and checks both say the same.
func (v *managerView) result(t *testing.T, sessionID string, within time.Duration) managertest.Event {
	t.Helper()
	ev := v.reader.WaitStream(within, isSessionResult(sessionID))
	b := v.reader.WaitBroadcast(10*time.Second, isSessionResult(sessionID))
	if b.Name != ev.Name || b.Reason(1) != ev.Reason(1) || b.Int(2) != ev.Int(2) {
		t.Errorf("%s: broadcast %+v differs from the stream's %+v", ev.Name, b.Args, ev.Args)
	}
	return ev
}

func (v *managerView) countResults(sessionID string) (stream, broadcast int) {
	match := isSessionResult(sessionID)
	for _, ev := range v.reader.Stream() {
		if match(ev) {
			stream++
		}
	}
	for _, ev := range v.reader.Broadcasts() {
		if match(ev) {
			broadcast++
		}
	}
	return stream, broadcast
}

// TestBatchSessionsAsTheManagerReadsThem runs batch jobs through a real
// agent, real Docker and real Redis and reads the results back as the 26.8
// manager does (agent/agent.py execute_batch and _iterate_batch_result,
// agent/server.py trigger_batch_execution).
func TestBatchSessionsAsTheManagerReadsThem(t *testing.T) {
	docker := kerneltest.Docker(t)
	kerneltest.BuildBusybox(t, docker)
	v := startWithRedis(t)
	v.reader.WaitStream(time.Minute, managertest.Named("agent_started"))

	cases := []struct {
		description string
		command     string
		timeout     string
		wantName    string
		wantReason  string
		wantExit    int
		// within bounds when the result arrives after the trigger.
		within time.Duration
	}{
		{description: "a failing job is task-failed with its exit code", command: "exit 3",
			wantName: "session_failure", wantReason: "task-failed", wantExit: 3, within: 30 * time.Second},
		{description: "a job exiting 0 is task-finished", command: "true",
			wantName: "session_success", wantReason: "task-finished", wantExit: 0, within: 30 * time.Second},
		{description: "an empty startup command finishes at once", command: "",
			wantName: "session_success", wantReason: "task-finished", wantExit: 0, within: 30 * time.Second},
		{description: "a job outliving its timeout is task-timeout -2", command: "sleep 100", timeout: "1s",
			wantName: "session_failure", wantReason: "task-timeout", wantExit: -2, within: 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			kid, sid := v.runBatch(t, tc.command, tc.timeout)
			triggered := time.Now()
			ev := v.result(t, sid, tc.within)
			if ev.Name != tc.wantName || ev.Reason(1) != tc.wantReason || !ev.ReasonIsEnum(1) || ev.Int(2) != tc.wantExit {
				t.Fatalf("got %s %+v, want %s(%s, %s, %d)", ev.Name, ev.Args, tc.wantName, sid, tc.wantReason, tc.wantExit)
			}
			// Every execute round is session activity for the manager.
			v.reader.WaitStream(5*time.Second, func(e managertest.Event) bool { return e.Name == "execution_started" && e.Str(0) == sid })
			if tc.wantReason == "task-timeout" {
				if took := time.Since(triggered); took > 4*time.Second {
					t.Errorf("task-timeout after %v, want about a second", took)
				}
				// The agent neither kills the job nor destroys the kernel.
				if _, ok := v.kernels(t)[kid]; !ok {
					t.Errorf("kernel %s gone after the batch timeout", kid)
				}
			}
			v.invoke(t, "destroy_kernel", kid, sid, nil)
			v.terminated(t, kid)
		})
	}

	t.Run("an unknown kernel answers None and reports nothing", func(t *testing.T) {
		ghost, ghostSession := "6a1d4d0e-0a7e-4f43-9d0c-3c0d2f6f6c01", "6a1d4d0e-0a7e-4f43-9d0c-3c0d2f6f6c02"
		if got := v.invoke(t, "trigger_batch_execution", ghost, ghostSession, "true", nil); got != nil {
			t.Fatalf("trigger_batch_execution returned %#v, want None", got)
		}
		time.Sleep(2 * time.Second)
		if s, b := v.countResults(ghostSession); s+b != 0 {
			t.Fatalf("%d stream and %d broadcast results for an unknown kernel", s, b)
		}
	})

	t.Run("a job's result survives the agent's SIGKILL, exactly once", func(t *testing.T) {
		kid, sid := v.runBatch(t, "sleep 10; exit 4", "")
		v.reader.WaitStream(10*time.Second, func(e managertest.Event) bool { return e.Name == "execution_started" && e.Str(0) == sid })
		time.Sleep(2 * time.Second)
		v.kill()
		v.start(t)
		ev := v.result(t, sid, time.Minute)
		if ev.Name != "session_failure" || ev.Reason(1) != "task-failed" || ev.Int(2) != 4 {
			t.Fatalf("after the restart: %s %+v, want session_failure(task-failed, 4)", ev.Name, ev.Args)
		}
		// A further restart must not report it again. The agent records
		// the result as reported just after sending it; a kill in between
		// sends it again (at least once, never lost), so this restart
		// waits for the record, as a restart after the report would.
		jobFile := filepath.Join(v.scratch, kid, "config", kernel.BatchJobFile)
		testutil.Eventually(t, 30*time.Second, "the batch job recorded as reported", func() bool {
			raw, err := os.ReadFile(jobFile)
			var job kernel.BatchJob
			return err == nil && json.Unmarshal(raw, &job) == nil && job.Reported
		})
		v.kill()
		v.start(t)
		time.Sleep(3 * time.Second)
		if s, b := v.countResults(sid); s != 1 || b != 1 {
			t.Fatalf("the result came %d times in the stream and %d on events_all, want once each", s, b)
		}
		v.invoke(t, "destroy_kernel", kid, sid, nil)
		v.terminated(t, kid)
	})
}
