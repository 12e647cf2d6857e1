package runner

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runtime kinds the runner serves in query mode.
const (
	RuntimeShell  = "shell"
	RuntimePython = "python"
)

// fallbackDelay is how long an interrupted shell run may take to report by
// itself before the runner asks the shell for its status: an interactive
// shell abandons the rest of the interrupted command line, report included.
const fallbackDelay = 300 * time.Millisecond

// syncTimeout bounds the wait for the sync markers after a run reported its
// status; they are written before the status, so only a broken interpreter
// (one that closed its stdout) makes this wait run out.
const syncTimeout = 5 * time.Second

// pythonDriver runs inside the persistent python3. It reads "<seq> <file>"
// lines from fd 3, runs each file in one namespace (a last expression's
// value is printed, as in a REPL), then prints the sync marker on stdout and
// stderr and "<seq> <exit code>" on fd 4. stdin stays the user's input.
const pythonDriver = `
import ast, os, sys, traceback
ctl = os.fdopen(3, "r", encoding="utf-8")
status = os.fdopen(4, "w", encoding="utf-8")
marker = ("\x1eS" + os.environ.pop("BAIAGENT_SYNC_TOKEN") + "\x1e").encode()
ns = {"__name__": "__main__", "__builtins__": __builtins__}
def run(path):
    with open(path, encoding="utf-8") as f:
        src = f.read()
    try:
        tree = ast.parse(src, "<input>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<input>", "exec"), ns)
        if last is not None:
            value = eval(compile(last, "<input>", "eval"), ns)
            if value is not None:
                print(repr(value))
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException:
        etype, value, tb = sys.exc_info()
        traceback.print_exception(etype, value, tb.tb_next)
        return 1
def report(seq, code):
    sys.stdout.flush(); sys.stderr.flush()
    os.write(1, marker); os.write(2, marker)
    status.write("%s %d\n" % (seq, code)); status.flush()
report(0, 0)
while True:
    try:
        line = ctl.readline()
        if not line:
            break
        seq, path = line.rstrip("\n").split(" ", 1)
        code = run(path)
    except KeyboardInterrupt:
        continue
    try:
        report(seq, code)
    except KeyboardInterrupt:
        report(seq, 130)
`

// interpreter is a persistent shell or python3 process. Variables, the
// working directory and imports survive from one run to the next; if the
// process dies (the code called exit), the next run starts a fresh one.
type interpreter struct {
	kind   string
	path   string
	dir    string
	env    []string
	input  *os.File // read end of the user's stdin pipe, shared with batch runs
	tmpDir string
	cred   *syscall.Credential // the kernel user; nil runs as the runner
	emit   func(typ string, data []byte)

	mu      sync.Mutex // guards proc between Run and Interrupt
	proc    *interpProcess
	seq     int
	running bool
	intr    chan struct{}
}

type interpProcess struct {
	cmd         *exec.Cmd
	control     *os.File
	statuses    chan runStatus
	stdoutSyncs chan struct{}
	stderrSyncs chan struct{}
	readersDone sync.WaitGroup
	exited      chan struct{}
	exitCode    int
}

type runStatus struct {
	seq  int
	code int
}

func newInterpreter(kind, path, dir string, env []string, input *os.File, tmpDir string, cred *syscall.Credential, emit func(string, []byte)) *interpreter {
	return &interpreter{kind: kind, path: path, dir: dir, env: env, input: input, tmpDir: tmpDir, cred: cred, emit: emit,
		intr: make(chan struct{}, 1)}
}

// RootPID is the interpreter's pid, or 0 when none runs.
func (it *interpreter) RootPID() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.proc == nil {
		return 0
	}
	return it.proc.cmd.Process.Pid
}

// Interrupt sends SIGINT to the code that is running, if any.
func (it *interpreter) Interrupt() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.proc == nil || !it.running {
		return
	}
	_ = syscall.Kill(-it.proc.cmd.Process.Pid, syscall.SIGINT)
	select {
	case it.intr <- struct{}{}:
	default:
	}
}

// Close kills the interpreter and its process group.
func (it *interpreter) Close() {
	it.mu.Lock()
	p := it.proc
	it.proc = nil
	it.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

func (p *interpProcess) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.control.Close()
	<-p.exited
}

// Start launches the interpreter if none is running and waits until it is
// ready, dropping whatever it prints at start (banners, job-control notes).
func (it *interpreter) Start(ctx context.Context) error {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.proc != nil {
		return nil
	}
	p, err := it.launch(ctx)
	if err != nil {
		return err
	}
	it.proc = p
	return nil
}

func (it *interpreter) launch(ctx context.Context) (*interpProcess, error) {
	tokenBytes := make([]byte, 12)
	if _, err := rand.Read(tokenBytes); err != nil {
		return nil, fmt.Errorf("sync token: %w", err)
	}
	token := hex.EncodeToString(tokenBytes)
	marker := []byte("\x1eS" + token + "\x1e")

	var closeAfterStart, closeOnError []*os.File
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			closeOnError = append(closeOnError, r, w)
		}
		return r, w, err
	}
	fail := func(err error) (*interpProcess, error) {
		for _, f := range closeOnError {
			_ = f.Close()
		}
		return nil, err
	}
	controlR, controlW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("control pipe: %w", err))
	}
	statusR, statusW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("status pipe: %w", err))
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("stdout pipe: %w", err))
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		return fail(fmt.Errorf("stderr pipe: %w", err))
	}
	closeAfterStart = append(closeAfterStart, controlR, statusW, stdoutW, stderrW)

	var cmd *exec.Cmd
	switch it.kind {
	case RuntimePython:
		// fd 0: the user's input; fd 3: control; fd 4: status.
		cmd = exec.Command(it.path, "-u", "-c", pythonDriver)
		cmd.Stdin = it.input
		cmd.ExtraFiles = []*os.File{controlR, statusW}
		cmd.Env = append(append([]string(nil), it.env...), "BAIAGENT_SYNC_TOKEN="+token, "PYTHONUNBUFFERED=1")
	default:
		// An interactive shell, because only an interactive shell goes back
		// to reading commands after SIGINT with its variables intact. fd 0:
		// control; fd 3: status; fd 4: the user's input, which every run
		// gets as its stdin.
		args := []string{"-i"}
		if filepath.Base(it.path) == "bash" {
			args = []string{"--norc", "--noprofile", "--noediting", "-i"}
		}
		cmd = exec.Command(it.path, args...)
		cmd.Stdin = controlR
		cmd.ExtraFiles = []*os.File{statusW, it.input}
		cmd.Env = append(withoutEnv(it.env, "ENV", "PS1", "PS2", "PS4", "PROMPT_COMMAND"), "PS1=", "PS2=", "PS4=")
	}
	cmd.Stdout = stdoutW
	cmd.Stderr = stderrW
	if st, err := os.Stat(it.dir); err == nil && st.IsDir() {
		cmd.Dir = it.dir
	}
	// A session of its own, not only a process group: with the container's
	// Tty (as upstream makes kernels) the runner has a controlling
	// terminal, and an interactive shell in a background group of that
	// session would stop on SIGTTIN/SIGTTOU taking the terminal for job
	// control. Without one it has no job control, as under a pipe.
	cmd.SysProcAttr = procAttr(it.cred)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s interpreter %s: %w", it.kind, it.path, err))
	}
	for _, f := range closeAfterStart {
		_ = f.Close()
	}
	p := &interpProcess{
		cmd:         cmd,
		control:     controlW,
		statuses:    make(chan runStatus, 16),
		stdoutSyncs: make(chan struct{}, 16),
		stderrSyncs: make(chan struct{}, 16),
		exited:      make(chan struct{}),
	}
	p.readersDone.Add(2)
	go it.pump(stdoutR, "stdout", marker, p.stdoutSyncs, &p.readersDone)
	go it.pump(stderrR, "stderr", marker, p.stderrSyncs, &p.readersDone)
	go readStatuses(statusR, p.statuses)
	go func() {
		err := cmd.Wait()
		p.exitCode = exitCodeOf(err, 1)
		close(p.exited)
	}()

	if it.kind != RuntimePython {
		prelude := fmt.Sprintf(
			"__bai_done() { printf '\\036S%s\\036'; printf '\\036S%s\\036' >&2; printf '%%s %%s\\n' \"$1\" \"$2\" >&3; }; __bai_done 0 0\n",
			token, token)
		if _, err := io.WriteString(controlW, prelude); err != nil {
			p.kill()
			return nil, fmt.Errorf("start %s interpreter: %w", it.kind, err)
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.await(startCtx, 0, nil, nil); err != nil {
		p.kill()
		return nil, fmt.Errorf("start %s interpreter %s: %w", it.kind, it.path, err)
	}
	return p, nil
}

// errInterpreterExited means the interpreter process ended during a run.
var errInterpreterExited = errors.New("interpreter exited")

// await waits for the status of run seq and the sync markers that precede
// it. Statuses of other runs (late fallback reports) are skipped. When
// interrupts is not nil, each interrupt arms onFallback after fallbackDelay.
func (p *interpProcess) await(ctx context.Context, seq int, interrupts <-chan struct{}, onFallback func()) (int, error) {
	var fallback <-chan time.Time
	for {
		select {
		case st := <-p.statuses:
			if err := p.awaitSyncs(); err != nil {
				return 0, err
			}
			if st.seq == seq {
				return st.code, nil
			}
		case <-interrupts:
			fallback = time.After(fallbackDelay)
		case <-fallback:
			fallback = nil
			if onFallback != nil {
				onFallback()
			}
		case <-p.exited:
			return p.exitCode, errInterpreterExited
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (p *interpProcess) awaitSyncs() error {
	timeout := time.After(syncTimeout)
	for _, ch := range []chan struct{}{p.stdoutSyncs, p.stderrSyncs} {
		select {
		case <-ch:
		case <-p.exited:
			return errInterpreterExited
		case <-timeout:
			return errors.New("interpreter output did not sync")
		}
	}
	return nil
}

// Run executes code and returns its exit status after all its output was
// emitted. If the interpreter exits, its exit code is the run's and the next
// run starts a new interpreter.
func (it *interpreter) Run(ctx context.Context, code string) (int, error) {
	if err := it.Start(ctx); err != nil {
		return 0, err
	}
	it.mu.Lock()
	p := it.proc
	it.seq++
	seq := it.seq
	it.running = true
	select { // an interrupt aimed at an earlier run must not hit this one
	case <-it.intr:
	default:
	}
	it.mu.Unlock()
	defer func() {
		it.mu.Lock()
		it.running = false
		it.mu.Unlock()
	}()

	file, err := os.CreateTemp(it.tmpDir, "run-*")
	if err != nil {
		return 0, fmt.Errorf("write code: %w", err)
	}
	defer os.Remove(file.Name())
	_, werr := file.WriteString(code)
	if cerr := file.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = chownTo(it.cred, file.Name())
	}
	if werr != nil {
		return 0, fmt.Errorf("write code: %w", werr)
	}
	// The file must be readable by the interpreter: the kernel user owns it.
	var line string
	var onFallback func()
	if it.kind == RuntimePython {
		line = fmt.Sprintf("%d %s\n", seq, file.Name())
	} else {
		line = fmt.Sprintf(". %s 0<&4; __bai_done %d $?\n", file.Name(), seq)
		onFallback = func() { _, _ = fmt.Fprintf(p.control, "__bai_done %d 130\n", seq) }
	}
	if _, err := io.WriteString(p.control, line); err != nil {
		return it.reap(p, err)
	}
	code2, err := p.await(ctx, seq, it.intr, onFallback)
	if errors.Is(err, errInterpreterExited) {
		return it.reap(p, nil)
	}
	return code2, err
}

// reap forgets a dead interpreter after its remaining output was emitted.
func (it *interpreter) reap(p *interpProcess, cause error) (int, error) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	done := make(chan struct{})
	go func() { p.readersDone.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	_ = p.control.Close()
	it.mu.Lock()
	if it.proc == p {
		it.proc = nil
	}
	it.mu.Unlock()
	if cause != nil {
		return 0, fmt.Errorf("%s interpreter: %w", it.kind, cause)
	}
	return p.exitCode, nil
}

func (it *interpreter) pump(r *os.File, typ string, marker []byte, syncs chan<- struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	defer r.Close()
	split := newSyncSplitter(marker)
	started := false // output before the first marker is start-up noise
	onData := func(b []byte) {
		if started {
			it.emit(typ, append([]byte(nil), b...))
		}
	}
	onSync := func() {
		started = true
		select {
		case syncs <- struct{}{}:
		default: // nobody waits for stale markers
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			split.Feed(buf[:n], onData, onSync)
		}
		if err != nil {
			split.Flush(onData)
			return
		}
	}
}

func readStatuses(r *os.File, out chan<- runStatus) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		seqText, codeText, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		seq, err1 := strconv.Atoi(seqText)
		code, err2 := strconv.Atoi(codeText)
		if err1 != nil || err2 != nil {
			continue
		}
		out <- runStatus{seq: seq, code: code}
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// exitCodeOf turns a Wait error into a shell-style exit code: the status,
// or 128+signal for a process killed by a signal; otherwise for an error
// that is no exit status (the process could not run).
func exitCodeOf(err error, otherwise int) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return otherwise
}
