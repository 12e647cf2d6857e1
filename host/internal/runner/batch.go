package runner

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
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
}

func (w emitWriter) Write(p []byte) (int, error) {
	w.emit(w.typ, append([]byte(nil), p...))
	return len(p), nil
}

// run executes command with the shell and returns its exit code; a command
// that cannot start reports 127 like a shell does.
func (b *batchProcess) run(ctx context.Context, shell, command, dir string, env []string, cred *syscall.Credential, input *os.File, emit func(string, []byte)) int {
	cmd := exec.CommandContext(ctx, shell, "-c", command)
	cmd.Stdin = input
	cmd.Stdout = emitWriter{typ: "stdout", emit: emit}
	cmd.Stderr = emitWriter{typ: "stderr", emit: emit}
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
