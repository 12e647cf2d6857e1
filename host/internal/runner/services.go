package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// services starts and tracks processes bound to service ports.
type services struct {
	// defs are the image's service definitions, loaded at runner start;
	// a file that does not parse keeps its error for start-service.
	defs        map[string]loadedDefinition
	runtimePath string
	// builtins: the runtime is python, whose built-in apps start when
	// the image defines no service of that name, as upstream's.
	builtins    bool
	dir         string
	tempDir     string
	env         []string
	openTimeout time.Duration
	// shellPath runs sshd's exec requests; sshdConfig locates its keys.
	shellPath  string
	sshdConfig SSHDConfig
	// cred is the kernel user every service process runs as (nil: as
	// the runner).
	cred *syscall.Credential
	log  *slog.Logger

	// startLock serialises starts and shutdowns, as upstream's
	// _service_lock; vars (upstream's ServiceParser.variables: runtime_path,
	// ports and every ref) are only touched under it.
	startLock chan struct{}
	vars      map[string]any

	mu      sync.Mutex
	running map[string]*serviceProcess
	sshd    *sshServer // the intrinsic sshd, once started
}

type loadedDefinition struct {
	def serviceDefinition
	err error
}

type serviceProcess struct {
	pid    int
	exited chan struct{}
}

func (p *serviceProcess) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Timeouts of upstream's terminate_and_wait: after a port that never
// opened, and on shutdown_service.
const (
	serviceLaunchKillAfter   = 10 * time.Second
	serviceShutdownKillAfter = 2 * time.Second
)

// newServices loads the service definitions in defsDir (upstream's
// ServiceParser.parse over *.json).
func newServices(defsDir string, log *slog.Logger) *services {
	s := &services{defs: map[string]loadedDefinition{}, running: map[string]*serviceProcess{},
		startLock: make(chan struct{}, 1), vars: map[string]any{}, log: log}
	if defsDir == "" {
		return s
	}
	paths, _ := filepath.Glob(filepath.Join(defsDir, "*.json"))
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		raw, err := os.ReadFile(p)
		if err != nil {
			s.defs[name] = loadedDefinition{err: invalidDef("could not read the service-def file: %s", filepath.Base(p))}
			continue
		}
		def, err := parseServiceDefinition(raw)
		if err != nil {
			log.Warn("invalid service definition", "file", p, "err", err)
		}
		s.defs[name] = loadedDefinition{def: def, err: err}
	}
	return s
}

func failed(format string, args ...any) protocol.ServiceResult {
	return protocol.ServiceResult{Status: "failed", Error: fmt.Sprintf(format, args...)}
}

// Start starts the service unless it runs already, then waits until its
// port accepts connections, as upstream's BaseRunner._start_service. sshd
// is intrinsic: the runner serves it itself, whatever the image defines.
func (s *services) Start(ctx context.Context, req protocol.ServiceRequest) protocol.ServiceResult {
	if req.Name == protocol.SSHDService {
		return s.startSSHD(req)
	}
	select {
	case s.startLock <- struct{}{}:
	case <-ctx.Done():
		return failed("%v", ctx.Err())
	}
	defer func() { <-s.startLock }()

	if req.Protocol == "preopen" {
		return protocol.ServiceResult{Status: "started"} // the user runs it
	}
	s.mu.Lock()
	proc, ok := s.running[req.Name]
	s.mu.Unlock()
	if ok && proc.alive() {
		return protocol.ServiceResult{Status: "running"}
	}
	if req.Protocol == "pty" {
		return failed("not implemented yet")
	}
	ports := req.Ports
	if len(ports) == 0 && req.Port > 0 {
		ports = []int{req.Port}
	}
	port := req.Port
	if port == 0 && len(ports) > 0 {
		port = ports[0]
	}

	var argv []string
	var env []keyValue
	var dir string
	if loaded, ok := s.defs[req.Name]; ok {
		if loaded.err != nil {
			return failed("%v", loaded.err)
		}
		if loaded.def.noop {
			// upstream hands an empty command to create_subprocess_exec,
			// which fails; a noop service has nothing to run, so it starts.
			return protocol.ServiceResult{Status: "started"}
		}
		var err error
		if argv, env, err = s.prepare(ctx, req, ports, loaded.def); err != nil {
			return failed("%v", err)
		}
	} else if app, ok, err := s.builtin(req.Name, port); ok {
		if err != nil {
			return failed("%v", err)
		}
		argv, dir = app.argv, app.dir
	} else if len(req.Command) > 0 {
		// Our extension: a command in the request for an undefined service.
		vars := map[string]any{"runtime_path": s.runtimePath, "ports": ports}
		for _, arg := range req.Command {
			out, err := interpolate(arg, vars)
			if err != nil {
				return failed("%v", err)
			}
			argv = append(argv, out)
		}
		for k, v := range req.Env {
			out, err := interpolate(v, vars)
			if err != nil {
				return failed("%v", err)
			}
			env = append(env, keyValue{k, out})
		}
	} else {
		return failed("unsupported service: %s", req.Name)
	}
	return s.spawn(ctx, req.Name, argv, env, dir, port)
}

// builtin is the runtime's built-in app of that name, if it has one.
func (s *services) builtin(name string, port int) (builtinApp, bool, error) {
	if !s.builtins {
		return builtinApp{}, false, nil
	}
	return pythonBuiltinApp(builtinAppEnv{runtimePath: s.runtimePath, tempDir: s.tempDir, workDir: s.dir, cred: s.cred}, name, port)
}

// prepare runs the definition's prestart actions and builds its command.
func (s *services) prepare(ctx context.Context, req protocol.ServiceRequest, ports []int, def serviceDefinition) ([]string, []keyValue, error) {
	s.vars["runtime_path"] = s.runtimePath
	s.vars["ports"] = slices.Clone(ports)
	aenv := actionEnv{workDir: s.dir, tempDir: s.tempDir, cred: s.cred, log: s.log, stdout: os.Stdout, stderr: os.Stderr}
	for _, a := range def.prestart {
		ret, err := runAction(ctx, aenv, req.Name, a, s.vars)
		if err != nil {
			return nil, nil, err
		}
		if a.ref != "" {
			s.vars[a.ref] = ret
		}
	}
	opts, err := parseServiceOptions(req.Options)
	if err != nil {
		return nil, nil, err
	}
	frozen := map[string]bool{}
	for _, kv := range s.env {
		k, _, _ := strings.Cut(kv, "=")
		frozen[k] = true
	}
	return def.commandLine(req.Name, s.vars, opts, func(k string) bool { return frozen[k] })
}

// spawn starts argv in its own process group with the runner's child
// environment plus env, in dir ("" is the work dir), and waits for the
// port.
func (s *services) spawn(ctx context.Context, name string, argv []string, env []keyValue, dir string, port int) protocol.ServiceResult {
	if len(argv) == 0 {
		return failed("service %s has an empty command", name)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = mergeEnv(s.env, env)
	if dir == "" {
		dir = s.dir
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		cmd.Dir = dir
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = procAttr(s.cred)
	if err := cmd.Start(); err != nil {
		switch {
		case errors.Is(err, fs.ErrPermission):
			return failed("the target file is not executable: %s", argv[0])
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, exec.ErrNotFound):
			return failed("the executable file is not found: %s", argv[0])
		}
		return failed("%v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	proc := &serviceProcess{pid: cmd.Process.Pid, exited: exited}
	s.mu.Lock()
	s.running[name] = proc
	s.mu.Unlock()
	if port <= 0 {
		return protocol.ServiceResult{Status: "started"}
	}
	deadline := time.NewTimer(s.openTimeout)
	defer deadline.Stop()
	// Upstream polls every 100 ms; a python app binds in tens of
	// milliseconds, and a refused local connect costs microseconds, so
	// ours polls after 5 ms, doubling to every 20 ms.
	poll := 5 * time.Millisecond
	tick := time.NewTimer(poll)
	defer tick.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			s.log.Info("service started", "service", name, "pid", proc.pid, "port", port)
			return protocol.ServiceResult{Status: "started"}
		}
		select {
		case <-exited:
			s.forget(name, proc)
			return failed("the process did not start properly: %s", argv[0])
		case <-ctx.Done():
			s.forget(name, proc)
			terminate(proc, 0)
			return failed("%v", ctx.Err())
		case <-deadline.C:
			s.forget(name, proc)
			terminate(proc, serviceLaunchKillAfter)
			return failed("opening the service port timed out: %s", name)
		case <-tick.C:
			poll = min(2*poll, 20*time.Millisecond)
			tick.Reset(poll)
		}
	}
}

// mergeEnv is {**base, **extra} as environment lines, with
// /opt/backend.ai/lib taken out of LD_LIBRARY_PATH as upstream does for
// service processes.
func mergeEnv(base []string, extra []keyValue) []string {
	index := map[string]int{}
	out := make([]string, 0, len(base)+len(extra))
	set := func(k, v string) {
		if i, ok := index[k]; ok {
			out[i] = k + "=" + v
			return
		}
		index[k] = len(out)
		out = append(out, k+"="+v)
	}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, kv := range extra {
		set(kv.key, kv.value)
	}
	if i, ok := index["LD_LIBRARY_PATH"]; ok {
		out[i] = strings.Replace(out[i], "/opt/backend.ai/lib:", "", -1)
	}
	return out
}

func (s *services) forget(name string, proc *serviceProcess) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[name] == proc {
		delete(s.running, name)
	}
}

// terminate is upstream's terminate_and_wait over the process group:
// SIGTERM, then SIGKILL if it has not exited after killAfter.
func terminate(proc *serviceProcess, killAfter time.Duration) {
	if killAfter > 0 {
		_ = syscall.Kill(-proc.pid, syscall.SIGTERM)
		t := time.NewTimer(killAfter)
		defer t.Stop()
		select {
		case <-proc.exited:
			return
		case <-t.C:
		}
	}
	_ = syscall.Kill(-proc.pid, syscall.SIGKILL)
	<-proc.exited
}

// Shutdown stops a started service: SIGTERM, SIGKILL after 2 s.
func (s *services) Shutdown(ctx context.Context, name string) bool {
	if name == protocol.SSHDService {
		return s.stopSSHD()
	}
	select {
	case s.startLock <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-s.startLock }()
	s.mu.Lock()
	proc, ok := s.running[name]
	delete(s.running, name)
	s.mu.Unlock()
	if !ok {
		return false
	}
	terminate(proc, serviceShutdownKillAfter)
	return true
}

// StopAll kills every service's process group and waits for them.
func (s *services) StopAll() {
	s.stopSSHD()
	s.mu.Lock()
	procs := s.running
	s.running = map[string]*serviceProcess{}
	s.mu.Unlock()
	for _, proc := range procs {
		terminate(proc, 0)
	}
}

// Apps lists the services the image defines, as upstream's get_apps:
// the name, and url_template, allowed_arguments and allowed_envs where set.
func (s *services) Apps() []protocol.App {
	apps := []protocol.App{}
	for name, loaded := range s.defs {
		if loaded.err != nil {
			continue
		}
		apps = append(apps, protocol.App{Name: name, URLTemplate: loaded.def.urlTemplate,
			AllowedArguments: loaded.def.allowedArgs, AllowedEnvs: loaded.def.allowedEnvs})
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	return apps
}
