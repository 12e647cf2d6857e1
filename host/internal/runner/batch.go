package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// batchProcess runs one batch step (clean, build or exec) as "sh -c CMD" in
// its own process group, so that interrupt reaches everything it started.
type batchProcess struct {
	mu  sync.Mutex
	pid int
}

func (b *batchProcess) RootPID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pid
}

func (b *batchProcess) Interrupt() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pid > 0 {
		_ = syscall.Kill(-b.pid, syscall.SIGINT)
	}
}

// emitWriter forwards a process's output as runner messages.
type emitWriter struct {
	typ  string
	emit func(string, []byte)
	copy *os.File // may be nil
}

func (w emitWriter) Write(p []byte) (int, error) {
	if w.copy != nil {
		_, _ = w.copy.Write(p) // the log copy is best effort, as upstream's
	}
	w.emit(w.typ, append([]byte(nil), p...))
	return len(p), nil
}

// run executes command with the shell and returns its exit code; a command
// that cannot start reports 127 like a shell does.
// A non-nil logFile gets a copy of the output (upstream's task log).
func (b *batchProcess) run(ctx context.Context, shell, command, dir string, env []string, cred *syscall.Credential, input, logFile *os.File, emit func(string, []byte)) int {
	cmd := exec.CommandContext(ctx, shell, "-c", command)
	cmd.Stdin = input
	cmd.Stdout = emitWriter{typ: "stdout", emit: emit, copy: logFile}
	cmd.Stderr = emitWriter{typ: "stderr", emit: emit, copy: logFile}
	cmd.Env = env
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		cmd.Dir = dir
	}
	cmd.SysProcAttr = procAttr(cred)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Background children may keep the output pipes open; stop waiting
	// for them shortly after the command itself ended.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		emit("stderr", []byte("cannot start "+shell+": "+err.Error()+"\n"))
		return 127
	}
	b.mu.Lock()
	b.pid = cmd.Process.Pid
	b.mu.Unlock()
	err := cmd.Wait()
	b.mu.Lock()
	b.pid = 0
	b.mu.Unlock()
	return exitCodeOf(err, 1)
}

// batchRun is one batch step to run: its command, and whether it is the
// exec step (run with _BACKEND_BATCH_MODE=1) or the build step (whose
// failure skips the exec step).
type batchRun struct {
	command     string
	exec, build bool
}

// batchStep decides what a clean, build or exec step runs, as upstream's
// _clean/_build/_execute and run_tasks (kernel/base.py): an empty command
// skips the step with 0; "*" is the runtime's heuristic; anything else runs
// with the shell; an exec step after a failed build is skipped with 127.
// ok is false when nothing is to run and code is the step's exit code.
func (s *Server) batchStep(j job) (step batchRun, code int, ok bool) {
	command := strings.TrimSpace(j.text)
	switch j.typ {
	case protocol.TypeClean:
		if command == "" || command == "*" {
			return batchRun{}, 0, false // upstream's clean heuristic does nothing
		}
	case protocol.TypeBuild:
		s.buildFailed = false
		if command == "*" {
			command = s.buildHeuristic()
		}
		if command == "" {
			return batchRun{}, 0, false
		}
		return batchRun{command: command, build: true}, 0, true
	case protocol.TypeExec:
		if s.buildFailed {
			s.buildFailed = false
			return batchRun{}, 127, false
		}
		if command == "" {
			return batchRun{}, 0, false
		}
		if command == "*" {
			var found bool
			if command, found = s.execHeuristic(); !found {
				s.emit(protocol.TypeStderr, []byte("kernel runner: cannot find the main script (main.sh or main.py)\n"))
				return batchRun{}, 127, false
			}
		}
		return batchRun{command: command, exec: true}, 0, true
	}
	return batchRun{command: command}, 0, true
}

// runBatch runs one step and remembers a failed build for the exec step.
func (s *Server) runBatch(ctx context.Context, b *batchProcess, step batchRun, input *os.File) int {
	env := s.cfg.Env
	if step.exec {
		env = append(slices.Clone(env), "_BACKEND_BATCH_MODE=1")
	}
	logFile := s.openTaskLog()
	if logFile != nil {
		defer logFile.Close()
	}
	code := b.run(ctx, s.shellPath, step.command, s.cfg.WorkDir, env, s.cred, input, logFile, s.emit)
	if step.build && code != 0 {
		s.buildFailed = true
	}
	return code
}

// buildHeuristic is upstream's "*" build: make with a Makefile, else the
// python runtime installs a setup.py package, else nothing.
func (s *Server) buildHeuristic() string {
	if _, err := os.Stat(filepath.Join(s.cfg.WorkDir, "Makefile")); err == nil {
		return "make"
	}
	if s.kind == RuntimePython {
		if _, err := os.Stat(filepath.Join(s.cfg.WorkDir, "setup.py")); err == nil {
			return s.interp.path + " -m pip install --user -e ."
		}
	}
	return ""
}

// execHeuristic is upstream's execute_heuristic: run the work dir's main
// program when the exec command is "*".
func (s *Server) execHeuristic() (string, bool) {
	if _, err := os.Stat(filepath.Join(s.cfg.WorkDir, "main.sh")); err == nil {
		return "sh main.sh", true
	}
	if s.kind == RuntimePython {
		if _, err := os.Stat(filepath.Join(s.cfg.WorkDir, "main.py")); err == nil {
			return s.interp.path + " main.py", true
		}
	}
	return "", false
}

// openTaskLog opens the kernel's task log for appending when the work dir
// has a .logs folder, as upstream's run_subproc:
// .logs/task/<hex[0:2]>/<hex[2:4]>/<hex[4:]>.log of the kernel id. Nil when
// there is none or it cannot be opened (the run goes on without it).
func (s *Server) openTaskLog() *os.File {
	logs := filepath.Join(s.cfg.WorkDir, ".logs")
	if st, err := os.Stat(logs); err != nil || !st.IsDir() {
		return nil
	}
	hex := taskLogName(envValue(s.cfg.Env, "BACKENDAI_KERNEL_ID"))
	if hex == "" {
		return nil
	}
	path := filepath.Join(logs, "task", hex[:2], hex[2:4], hex[4:]+".log")
	if err := mkdirAllAs(s.cred, filepath.Dir(path)); err != nil {
		s.log.Warn("task log dir", "err", err)
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.log.Warn("task log", "err", err)
		return nil
	}
	if err := chownTo(s.cred, path); err != nil {
		s.log.Warn("task log owner", "err", err)
	}
	return f
}

// taskLogName is a kernel id as the 32 hex digits of its UUID, or "" when
// it is not one.
func taskLogName(kernelID string) string {
	hex := strings.ToLower(strings.ReplaceAll(kernelID, "-", ""))
	if len(hex) != 32 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	return hex
}

func envValue(env []string, name string) string {
	for _, kv := range slices.Backward(env) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
