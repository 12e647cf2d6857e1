// Package runner is baiagent's kernel runner: the program the agent mounts
// into every kernel container as its entrypoint. It speaks upstream's
// runner protocol (package protocol) on ports 2000/2001 with a pure-Go
// ZeroMQ, so the binary is static and runs in any image, and serves query
// mode with a persistent interpreter: python3 where the image asks for the
// python runtime and has it, otherwise a POSIX shell.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// Config says what the runner serves and where.
type Config struct {
	// RuntimeType and RuntimePath are the image's ai.backend.runtime-type
	// and ai.backend.runtime-path labels (either may be empty).
	RuntimeType string
	RuntimePath string
	// WorkDir is the code's working directory (/home/work).
	WorkDir string
	// ServiceDefsDir holds upstream's service definitions
	// (/etc/backend.ai/service-defs).
	ServiceDefsDir string
	// ProcRoot is /proc; the input watcher reads it.
	ProcRoot string
	// InputAddr and OutputAddr are the ZeroMQ endpoints to bind.
	InputAddr, OutputAddr string
	// Env is the environment of the code (the container's).
	Env []string
	// ServiceOpenTimeout bounds the wait for a started service's port.
	ServiceOpenTimeout time.Duration
	// SSHD is the intrinsic sshd's keys and boot port.
	SSHD SSHDConfig
	// User, when set, is the kernel user: the runner (root) writes it into
	// the /etc/passwd and /etc/group under EtcRoot and starts every child
	// as it. Nil runs the children as the runner.
	User    *KernelUser
	EtcRoot string
	// BootstrapPath is the user's bootstrap script, run with /bin/sh
	// before anything else when it exists; BootstrapTimeout bounds it.
	BootstrapPath    string
	BootstrapTimeout time.Duration
	Logger           *slog.Logger
}

// DefaultConfig is the configuration inside a kernel container.
func DefaultConfig(runtimeType, runtimePath string) (Config, error) {
	var user *KernelUser
	if os.Geteuid() == 0 {
		u, err := KernelUserFromEnv(os.Environ())
		if err != nil {
			return Config{}, err
		}
		user = &u
	}
	return Config{
		RuntimeType:        runtimeType,
		RuntimePath:        runtimePath,
		WorkDir:            "/home/work",
		ServiceDefsDir:     "/etc/backend.ai/service-defs",
		ProcRoot:           "/proc",
		InputAddr:          fmt.Sprintf("tcp://0.0.0.0:%d", protocol.InputPort),
		OutputAddr:         fmt.Sprintf("tcp://0.0.0.0:%d", protocol.OutputPort),
		Env:                childEnv(os.Environ(), osStat),
		ServiceOpenTimeout: 30 * time.Second,
		SSHD:               defaultSSHDConfig(),
		User:               user,
		EtcRoot:            "/",
		BootstrapPath:      "/home/work/bootstrap.sh",
		// The agent waits as long for the first status answer
		// (kernel-lifecycles init-timeout-sec, 60 s by default).
		BootstrapTimeout: 60 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, nil
}

// shellNames are the interpreters the shell runtime can drive.
var shellNames = []string{"sh", "bash", "ash", "dash", "ksh", "mksh"}

// ResolveRuntime picks the query-mode interpreter from the image labels:
// python when asked for and present, otherwise a POSIX shell. The reason
// says why a requested runtime was not used.
func ResolveRuntime(runtimeType, runtimePath string) (kind, path, reason string, err error) {
	if strings.HasPrefix(runtimeType, "python") {
		candidates := []string{runtimePath, "python3", "python"}
		for _, c := range candidates {
			if c == "" {
				continue
			}
			if p, err := exec.LookPath(c); err == nil {
				return RuntimePython, p, "", nil
			}
		}
		reason = fmt.Sprintf("runtime %q requested but no python interpreter found (runtime-path %q); using a shell", runtimeType, runtimePath)
	}
	if runtimePath != "" && slices.Contains(shellNames, filepath.Base(runtimePath)) {
		if p, err := exec.LookPath(runtimePath); err == nil {
			return RuntimeShell, p, reason, nil
		}
	}
	for _, c := range []string{"/bin/sh", "sh", "bash"} {
		if p, err := exec.LookPath(c); err == nil {
			return RuntimeShell, p, reason, nil
		}
	}
	return "", "", reason, errors.New("no shell found in the image (tried /bin/sh, sh, bash)")
}

// job is one queued code or batch step.
type job struct {
	typ  string // protocol.TypeCode, TypeClean, TypeBuild or TypeExec
	text string
}

// interruptible is whatever runs the current job.
type interruptible interface {
	Interrupt()
	RootPID() int
}

// Server runs the protocol until its context ends.
type Server struct {
	cfg       Config
	kind      string
	shellPath string
	startedAt time.Time
	log       *slog.Logger

	out   zmq4.Socket
	outMu sync.Mutex

	cred     *syscall.Credential // the kernel user; nil runs children as the runner
	interp   *interpreter
	services *services
	watcher  *inputWatcher
	inputs   chan []byte

	// handlers are the start- and shutdown-service requests in flight.
	handlers sync.WaitGroup

	jobs      chan job
	currentMu sync.Mutex
	current   interruptible
	busy      atomic.Bool
	// buildFailed is set by a failed build step and skips the next exec
	// step (runJobs' goroutine only).
	buildFailed bool
	// batchExit is the exit code of the last finished exec step, nil while
	// one runs or before the first: a restarted agent reads it from the
	// status reply when the step's "finished" went out while it was away.
	batchExit     atomic.Pointer[int]
	awaitingInput atomic.Bool
}

// Run serves until ctx ends or a socket fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	kind, path, reason, err := ResolveRuntime(cfg.RuntimeType, cfg.RuntimePath)
	if err != nil {
		return err
	}
	if reason != "" {
		cfg.Logger.Warn(reason)
	}
	shellPath := path
	if kind != RuntimeShell {
		if _, sp, _, err := ResolveRuntime("", ""); err == nil {
			shellPath = sp
		}
	}
	inputR, inputW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("input pipe: %w", err)
	}
	defer inputR.Close()
	defer inputW.Close()
	var cred *syscall.Credential
	if cfg.User != nil {
		if cred, err = SetupUser(cfg.EtcRoot, *cfg.User); err != nil {
			return fmt.Errorf("kernel user %d:%d: %w", cfg.User.UID, cfg.User.GID, err)
		}
	}
	tmpDir, err := makeTempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)
	if err := chownTo(cred, tmpDir); err != nil {
		return err
	}
	watcher, err := newInputWatcher(cfg.ProcRoot, inputR)
	if err != nil {
		return err
	}
	watcher.cred = cred

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &Server{
		cfg: cfg, kind: kind, shellPath: shellPath, startedAt: time.Now(), log: cfg.Logger,
		cred: cred, watcher: watcher,
		inputs: make(chan []byte, 64),
		jobs:   make(chan job, 256),
	}
	s.interp = newInterpreter(kind, path, cfg.WorkDir, cfg.Env, inputR, tmpDir, cred, s.emit)
	defer s.interp.Close()
	s.services = newServices(cfg.ServiceDefsDir, cfg.Logger)
	// Templates see the image label's runtime-path, as upstream's runner
	// gets it on its command line; without the label, the interpreter.
	s.services.runtimePath = cfg.RuntimePath
	if s.services.runtimePath == "" {
		s.services.runtimePath = path
	}
	s.services.dir, s.services.tempDir, s.services.env = cfg.WorkDir, os.TempDir(), cfg.Env
	s.services.openTimeout, s.services.shellPath, s.services.sshdConfig = cfg.ServiceOpenTimeout, shellPath, cfg.SSHD
	s.services.cred = cred
	s.services.builtins = kind == RuntimePython
	defer s.services.StopAll()

	s.out = zmq4.NewPush(ctx)
	defer s.out.Close()
	if err := s.out.Listen(cfg.OutputAddr); err != nil {
		return fmt.Errorf("bind output socket: %w", err)
	}
	in := zmq4.NewPull(ctx)
	defer in.Close()
	if err := in.Listen(cfg.InputAddr); err != nil {
		return fmt.Errorf("bind input socket: %w", err)
	}
	// As upstream's runner (kernel/base.py main_loop): the user's
	// bootstrap script before the intrinsic services and before the first
	// status answer, so creation returns once it ran. Its failure is
	// logged only.
	s.bootstrap(ctx)
	// The interpreter and the intrinsic sshd start side by side (they
	// share nothing), both before the first status answer: a kernel the
	// agent reports as started runs its first query without waiting for
	// the interpreter and accepts ssh at once.
	var boot sync.WaitGroup
	boot.Go(func() {
		// Started now, so the first query does not pay for it.
		if err := s.interp.Start(ctx); err != nil {
			s.log.Warn("interpreter did not start; the first run will retry", "err", err)
		}
	})
	if cfg.SSHD.BootPort > 0 {
		boot.Go(func() {
			// As upstream's runner starts its intrinsic services at boot;
			// start-service sshd retries if this fails.
			if res := s.services.Start(ctx, protocol.ServiceRequest{Name: protocol.SSHDService, Port: cfg.SSHD.BootPort}); res.Status == "failed" {
				s.log.Warn("intrinsic sshd did not start", "err", res.Error)
			}
		})
	}
	boot.Wait()
	s.log.Info("kernel runner ready", "runtime", kind, "interpreter", path)

	// Service handlers end with ctx; they are waited for after cancel.
	defer s.handlers.Wait()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.runJobs(ctx, inputR) }()
	go func() { defer wg.Done(); s.writeInputs(ctx, inputW) }()
	defer wg.Wait()
	defer cancel()

	for {
		raw, err := in.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// go-zeromq reports a peer that went away (an agent restart) as
			// a receive error; the socket itself keeps serving.
			s.log.Debug("receive", "err", err)
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		msg, err := protocol.Decode(raw.Frames)
		if err != nil {
			s.log.Warn("dropped a malformed message", "err", err)
			continue
		}
		s.handle(ctx, msg)
	}
}

func makeTempDir() (string, error) {
	var errs []error
	for _, base := range []string{os.TempDir(), "/dev/shm", "/home/work"} {
		dir, err := os.MkdirTemp(base, ".baiagent-runner-")
		if err == nil {
			return dir, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no writable temp dir: %w", errors.Join(errs...))
}

func (s *Server) emit(typ string, payload []byte) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if err := s.out.SendMulti(zmq4.NewMsgFrom([]byte(typ), payload)); err != nil {
		s.log.Debug("send failed", "type", typ, "err", err)
	}
}

func (s *Server) handle(ctx context.Context, msg protocol.Message) {
	switch msg.Type {
	case protocol.TypeCode, protocol.TypeClean, protocol.TypeBuild, protocol.TypeExec:
		select {
		case s.jobs <- job{typ: msg.Type, text: string(msg.Payload)}:
		default:
			s.emit(protocol.TypeStderr, []byte("kernel runner: too many queued runs; request dropped\n"))
			s.emit(finishType(msg.Type), protocol.MustJSON(protocol.ExitStatus{ExitCode: 1}))
		}
	case protocol.TypeInput:
		text := msg.Payload
		if len(text) == 0 || text[len(text)-1] != '\n' {
			text = append(append([]byte(nil), text...), '\n')
		}
		s.awaitingInput.Store(false)
		select {
		case s.inputs <- text:
		case <-ctx.Done():
		}
	case protocol.TypeInterrupt:
		s.currentMu.Lock()
		cur := s.current
		s.currentMu.Unlock()
		if cur != nil {
			cur.Interrupt()
		}
	case protocol.TypeStatus:
		s.emit(protocol.TypeStatusReply, protocol.MustJSON(protocol.Status{
			StartedAt: float64(s.startedAt.UnixNano()) / 1e9, Runtime: s.kind, Busy: s.busy.Load(),
			BatchExit: s.batchExit.Load(),
		}))
	case protocol.TypeComplete:
		var req protocol.CompletionRequest
		if err := protocol.DecodeJSON(msg.Payload, &req); err != nil {
			s.emit(protocol.TypeCompletion, []byte("[]"))
			return
		}
		s.emit(protocol.TypeCompletion, protocol.MustJSON(completions(s.kind, s.cfg.WorkDir, req)))
	case protocol.TypeStartService:
		req, err := protocol.DecodeServiceRequest(msg.Payload)
		if err != nil {
			s.emit(protocol.TypeServiceResult, protocol.MustJSON(protocol.ServiceResult{Status: "failed", Error: err.Error()}))
			return
		}
		// Waiting for the port must not hold up the other requests.
		s.handlers.Go(func() {
			s.emit(protocol.TypeServiceResult, protocol.MustJSON(s.services.Start(ctx, req)))
		})
	case protocol.TypeStartModelService:
		model, err := protocol.DecodeModelInfo(msg.Payload)
		if err != nil {
			s.emit(protocol.TypeModelServiceResult, protocol.MustJSON(protocol.ServiceResult{Status: "failed", Error: err.Error()}))
			return
		}
		// The start may wait minutes for health checks; the monitor
		// after it runs until the runner stops or the service exits.
		s.handlers.Go(func() {
			res, started := s.services.StartModel(ctx, model)
			s.emit(protocol.TypeModelServiceResult, protocol.MustJSON(res))
			if started != nil {
				s.services.monitorModel(ctx, model.Name, started, func(st protocol.ModelServiceStatus) {
					s.emit(protocol.TypeModelServiceStatus, protocol.MustJSON(st))
				})
			}
		})
	case protocol.TypeShutdownService:
		name := string(msg.Payload)
		s.handlers.Go(func() {
			s.services.Shutdown(ctx, name)
			s.emit(protocol.TypeShutdownResult, protocol.MustJSON(protocol.ServiceResult{Status: "done"}))
		})
	case protocol.TypeGetApps:
		s.emit(protocol.TypeAppsResult, protocol.MustJSON(protocol.AppsResult{Status: "done", Data: s.services.Apps()}))
	case protocol.TypeEvent:
		// Upstream forwards agent events to the kernel; nothing here acts on them.
	default:
		s.log.Warn("unknown message type", "type", msg.Type)
	}
}

func finishType(typ string) string {
	switch typ {
	case protocol.TypeClean:
		return protocol.TypeCleanFinished
	case protocol.TypeBuild:
		return protocol.TypeBuildFinished
	}
	return protocol.TypeFinished
}

func (s *Server) writeInputs(ctx context.Context, w *os.File) {
	for {
		select {
		case text := <-s.inputs:
			if _, err := w.Write(text); err != nil {
				s.log.Warn("writing input", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) runJobs(ctx context.Context, input *os.File) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.jobs:
			if j.typ == protocol.TypeExec {
				s.batchExit.Store(nil)
			}
			code := s.runJob(ctx, j, input)
			if j.typ == protocol.TypeExec {
				s.batchExit.Store(&code)
			}
			s.emit(finishType(j.typ), protocol.MustJSON(protocol.ExitStatus{ExitCode: code}))
		}
	}
}

func (s *Server) runJob(ctx context.Context, j job, input *os.File) int {
	s.busy.Store(true)
	defer s.busy.Store(false)
	var runner interruptible
	var run func() int
	switch j.typ {
	case protocol.TypeCode:
		runner = s.interp
		run = func() int {
			code, err := s.interp.Run(ctx, j.text)
			if err != nil {
				s.emit(protocol.TypeStderr, []byte("kernel runner: "+err.Error()+"\n"))
				return 1
			}
			return code
		}
	default:
		step, code, ok := s.batchStep(j)
		if !ok {
			return code
		}
		b := &batchProcess{}
		runner = b
		run = func() int { return s.runBatch(ctx, b, step, input) }
	}
	s.currentMu.Lock()
	s.current = runner
	s.currentMu.Unlock()
	watchDone := make(chan struct{})
	watchStopped := make(chan struct{})
	go func() { defer close(watchStopped); s.watchInput(runner, watchDone) }()
	code := run()
	close(watchDone)
	<-watchStopped
	s.currentMu.Lock()
	s.current = nil
	s.currentMu.Unlock()
	s.awaitingInput.Store(false)
	return code
}

// watchInput sends waiting-input once each time the run blocks on stdin.
func (s *Server) watchInput(runner interruptible, done <-chan struct{}) {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
			if s.awaitingInput.Load() {
				continue
			}
			if s.watcher.Waiting(runner.RootPID()) && s.awaitingInput.CompareAndSwap(false, true) {
				s.emit(protocol.TypeWaitingInput, protocol.MustJSON(protocol.WaitingInput{}))
			}
		}
	}
}

var pythonWords = []string{
	"False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
	"def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in",
	"is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
	"abs", "all", "any", "bool", "dict", "dir", "enumerate", "filter", "float", "format", "getattr",
	"hasattr", "input", "int", "isinstance", "len", "list", "map", "max", "min", "open", "print",
	"range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type", "zip",
}

// completions completes the word before the cursor: file names in the work
// dir, plus commands on PATH (shell) or keywords and builtins (python).
func completions(kind, workDir string, req protocol.CompletionRequest) []string {
	line := req.Options.Line
	if line == "" {
		line = req.Code
	}
	if col := req.Options.Col; col > 0 && col <= len(line) {
		line = line[:col]
	}
	word := line[strings.LastIndexAny(line, " \t\n;|&()=\"'")+1:]
	if word == "" {
		return []string{}
	}
	seen := map[string]bool{}
	add := func(c string) {
		if strings.HasPrefix(c, word) && c != word {
			seen[c] = true
		}
	}
	dir, base := filepath.Split(word)
	if entries, err := os.ReadDir(filepath.Join(workDir, dir)); err == nil && (base != "" || dir != "") {
		for _, e := range entries {
			name := dir + e.Name()
			if e.IsDir() {
				name += "/"
			}
			add(name)
		}
	}
	if kind == RuntimePython {
		for _, w := range pythonWords {
			add(w)
		}
	} else if dir == "" {
		for _, p := range filepath.SplitList(os.Getenv("PATH")) {
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				add(e.Name())
			}
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	if len(out) > 200 {
		out = out[:200]
	}
	return out
}

// bootstrap runs the user's bootstrap script with /bin/sh, as the kernel
// user in the work dir, its output in the container's log.
func (s *Server) bootstrap(ctx context.Context) {
	path := s.cfg.BootstrapPath
	if path == "" {
		return
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return
	}
	shell := "/bin/sh"
	if _, err := os.Stat(shell); err != nil {
		shell = s.shellPath
	}
	s.log.Info("running the user bootstrap script", "path", path)
	if s.cfg.BootstrapTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.BootstrapTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, shell, path)
	cmd.Env = s.cfg.Env
	if st, err := os.Stat(s.cfg.WorkDir); err == nil && st.IsDir() {
		cmd.Dir = s.cfg.WorkDir
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = procAttr(s.cred)
	// The whole group: a script's background children end with it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && err != nil:
		s.log.Warn("the user bootstrap script did not finish in time; killed", "timeout", s.cfg.BootstrapTimeout)
	case err != nil:
		s.log.Warn("the user bootstrap script failed", "exit_code", exitCodeOf(err, -1), "err", err)
	default:
		s.log.Info("the user bootstrap script has exited with code 0")
	}
}
