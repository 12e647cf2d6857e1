package runnerclient_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/runner"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// runBatch runs the batch steps to the exec step's "finished" and returns
// that result with the exec step's output.
func runBatch(t *testing.T, c *runnerclient.Client, runID string, b runnerclient.Batch) runnerclient.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mode := runnerclient.ModeBatch
	var all runnerclient.Result
	for {
		res, err := c.Execute(ctx, runID, mode, "", runnerclient.ExecOptions{Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		all.Console = append(all.Console, res.Console...)
		if res.Status == runnerclient.StatusFinished {
			all.Status, all.ExitCode = res.Status, res.ExitCode
			return all
		}
		mode = runnerclient.ModeContinue
	}
}

// The batch steps as upstream's runner runs them (kernel/base.py _clean,
// _build, _execute, run_tasks, run_subproc; kernel/python/__init__.py
// execute_heuristic).
func TestBatchSemantics(t *testing.T) {
	const kernelID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	cases := []struct {
		description string
		files       map[string]string // work dir files
		batch       runnerclient.Batch
		wantExit    int
		wantStdout  string
		wantTaskLog string // "" when there is no .logs folder
	}{
		{description: "an empty exec command is skipped and finishes with 0",
			batch: runnerclient.Batch{Exec: ""}, wantExit: 0, wantStdout: ""},
		{description: "an empty exec command does not run main.sh",
			files: map[string]string{"main.sh": "echo ran"}, batch: runnerclient.Batch{Exec: ""}, wantExit: 0, wantStdout: ""},
		{description: "* runs main.sh",
			files: map[string]string{"main.sh": "echo heuristic; exit 5"}, batch: runnerclient.Batch{Exec: "*"}, wantExit: 5, wantStdout: "heuristic\n"},
		{description: "* without a main script fails with 127",
			batch: runnerclient.Batch{Exec: "*"}, wantExit: 127},
		{description: "the exec step runs in batch mode in the work dir",
			files: map[string]string{"here": ""}, batch: runnerclient.Batch{Exec: `echo "$_BACKEND_BATCH_MODE"; ls`}, wantExit: 0, wantStdout: "1\nhere\n"},
		{description: "the build step is not in batch mode",
			batch: runnerclient.Batch{Build: `test -z "$_BACKEND_BATCH_MODE"`, Exec: "echo ok"}, wantExit: 0, wantStdout: "ok\n"},
		{description: "a failed build skips exec with 127",
			batch: runnerclient.Batch{Build: "exit 2", Exec: "echo never"}, wantExit: 127},
		{description: "build * runs make with a Makefile",
			files: map[string]string{"Makefile": "all:\n\t@echo made\n"}, batch: runnerclient.Batch{Build: "*", Exec: "true"}, wantExit: 0, wantStdout: "made\n"},
		{description: "the exit code comes back",
			batch: runnerclient.Batch{Exec: "exit 3"}, wantExit: 3},
		{description: "output is appended to the task log when .logs exists",
			files: map[string]string{".logs/keep": ""}, batch: runnerclient.Batch{Build: "echo b", Exec: "echo out; echo err >&2"},
			wantExit: 0, wantStdout: "b\nout\n", wantTaskLog: "b\nout\nerr\n"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if strings.Contains(tc.batch.Build, "*") {
				testutil.RequireTool(t, "make", "apt-get install make")
			}
			var work string
			c := startRunnerWith(t, "", "", func(cfg *runner.Config) {
				work = cfg.WorkDir
				cfg.Env = append(cfg.Env, "BACKENDAI_KERNEL_ID="+kernelID)
				for name, body := range tc.files {
					p := filepath.Join(work, name)
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
			res := runBatch(t, c, "batch-job", tc.batch)
			wantFinished(t, res, tc.wantExit)
			if got := output(res, "stdout"); got != tc.wantStdout {
				t.Fatalf("stdout %q, want %q", got, tc.wantStdout)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.BatchExit == nil || *st.BatchExit != tc.wantExit {
				t.Fatalf("status batch_exit %v, want %d", st.BatchExit, tc.wantExit)
			}
			logPath := filepath.Join(work, ".logs/task/0f/1e/2d3c4b5a69788796a5b4c3d2e1f0.log")
			got, err := os.ReadFile(logPath)
			switch {
			case tc.wantTaskLog == "" && err == nil:
				t.Fatalf("task log written without .logs: %q", got)
			case tc.wantTaskLog != "" && err != nil:
				t.Fatalf("task log: %v", err)
			case tc.wantTaskLog != "" && !sameLines(string(got), tc.wantTaskLog):
				t.Fatalf("task log %q, want the lines of %q", got, tc.wantTaskLog)
			}
		})
	}
}

// sameLines compares line sets: stdout and stderr reach the log in any order.
func sameLines(a, b string) bool {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
