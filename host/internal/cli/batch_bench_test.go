package cli

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
)

// TestBatchLatency measures, on one batch kernel, trigger_batch_execution of
// `true` until session_success is in the events stream, beside `docker
// exec` of `true` in the same container, interleaved, 50 runs each (set
// BAIAGENT_BENCH=1; BENCHMARKS.md has the numbers).
func TestBatchLatency(t *testing.T) {
	if os.Getenv("BAIAGENT_BENCH") == "" {
		t.Skip("set BAIAGENT_BENCH=1 to measure")
	}
	docker := kerneltest.Docker(t)
	kerneltest.BuildBusybox(t, docker)
	v := startWithRedis(t)
	v.reader.WaitStream(time.Minute, managertest.Named("agent_started"))
	kid, sid := v.runBatch(t, "true", "")
	v.result(t, sid, 30*time.Second) // warm: the first job
	cid, _ := v.kernels(t)[kid]["container_id"].(string)
	stream := v.redis.Client(t, 4)
	ctx := context.Background()

	const runs = 50
	var batch, dockerExec []time.Duration
	for i := range runs {
		session, err := newUUID()
		if err != nil {
			t.Fatal(err)
		}
		last := "0"
		if tail, err := stream.XRevRangeN(ctx, managertest.StreamKey, "+", "-", 1).Result(); err == nil && len(tail) == 1 {
			last = tail[0].ID
		}
		start := time.Now()
		v.invoke(t, "trigger_batch_execution", session, kid, "true", nil)
		waitResult(t, stream, last, session)
		batch = append(batch, time.Since(start))

		start = time.Now()
		if out, err := exec.Command("docker", "exec", cid, "true").CombinedOutput(); err != nil {
			t.Fatalf("docker exec %d: %v\n%s", i, err, out)
		}
		dockerExec = append(dockerExec, time.Since(start))
	}
	t.Logf("trigger_batch_execution(true) -> session_success in Redis: %s", quantiles(batch))
	t.Logf("docker exec true:                                       %s", quantiles(dockerExec))
	v.invoke(t, "destroy_kernel", kid, sid, nil)
}

// waitResult reads the stream after last until the session's result.
func waitResult(t *testing.T, stream *redis.Client, last, session string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		res, err := stream.Do(ctx, "XREAD", "BLOCK", 10000, "STREAMS", managertest.StreamKey, last).Slice()
		if err != nil {
			t.Fatalf("XREAD: %v", err)
		}
		for _, s := range res {
			entries := s.([]any)[1].([]any)
			for _, e := range entries {
				entry := e.([]any)
				last = entry[0].(string)
				raw := entry[1].([]any)
				pairs := make([]string, len(raw))
				for i, f := range raw {
					pairs[i] = f.(string)
				}
				ev, err := managertest.DecodeStreamEntry(pairs)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Name == "session_success" && ev.Str(0) == session {
					return
				}
				if ev.Name == "session_failure" && ev.Str(0) == session {
					t.Fatalf("session_failure %+v", ev.Args)
				}
			}
		}
	}
}

func quantiles(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(100 * time.Microsecond) }
	return "p50 " + q(0.5).String() + ", p90 " + q(0.9).String() + ", min " + s[0].Round(100*time.Microsecond).String() + ", max " + s[len(s)-1].Round(100*time.Microsecond).String()
}
