package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// serviceDefinition is the part of upstream's service-def JSON files
// (/etc/backend.ai/service-defs/<name>.json) the runner understands.
type serviceDefinition struct {
	Command  []string          `json:"command"`
	Env      map[string]string `json:"env"`
	Protocol string            `json:"protocol"`
	Ports    []int             `json:"ports"`
}

// services starts and tracks processes bound to service ports.
type services struct {
	defsDir     string
	runtimePath string
	dir         string
	env         []string
	openTimeout time.Duration
	// shellPath runs sshd's exec requests; sshdConfig locates its keys.
	shellPath  string
	sshdConfig SSHDConfig
	log        *slog.Logger

	mu      sync.Mutex
	running map[string]*serviceProcess
	sshd    *sshServer // the intrinsic sshd, once started
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

func (s *services) definition(name string) (serviceDefinition, bool, error) {
	if s.defsDir == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return serviceDefinition{}, false, nil
	}
	raw, err := os.ReadFile(filepath.Join(s.defsDir, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return serviceDefinition{}, false, nil
	}
	if err != nil {
		return serviceDefinition{}, false, err
	}
	var def serviceDefinition
	if err := json.Unmarshal(raw, &def); err != nil {
		return serviceDefinition{}, false, fmt.Errorf("service definition %s: %w", name, err)
	}
	return def, true, nil
}

// Start starts the service unless it runs already, then waits until its
// port accepts connections. sshd is intrinsic: the runner serves it itself,
// whatever the image defines (upstream's runner, too, handles it before
// the image's service definitions).
func (s *services) Start(ctx context.Context, req protocol.ServiceRequest) protocol.ServiceResult {
	if req.Name == protocol.SSHDService {
		return s.startSSHD(req)
	}
	ports := req.Ports
	if len(ports) == 0 && req.Port > 0 {
		ports = []int{req.Port}
	}
	s.mu.Lock()
	if proc, ok := s.running[req.Name]; ok && proc.alive() {
		s.mu.Unlock()
		return protocol.ServiceResult{Status: "running"}
	}
	s.mu.Unlock()

	def, found, err := s.definition(req.Name)
	if err != nil {
		return protocol.ServiceResult{Status: "failed", Error: err.Error()}
	}
	command, env := req.Command, req.Env
	if found && len(def.Command) > 0 {
		command = def.Command
		env = def.Env
	}
	if len(command) == 0 {
		return protocol.ServiceResult{Status: "failed", Error: fmt.Sprintf("service %q is not defined in the image and the request gives no command", req.Name)}
	}
	expanded := make([]string, len(command))
	for i, arg := range command {
		expanded[i] = s.expand(arg, ports)
	}
	cmd := exec.Command(expanded[0], expanded[1:]...)
	cmd.Env = append([]string(nil), s.env...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+s.expand(v, ports))
	}
	if st, err := os.Stat(s.dir); err == nil && st.IsDir() {
		cmd.Dir = s.dir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return protocol.ServiceResult{Status: "failed", Error: err.Error()}
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.running[req.Name] = &serviceProcess{pid: cmd.Process.Pid, exited: exited}
	s.mu.Unlock()

	if len(ports) == 0 {
		return protocol.ServiceResult{Status: "started"}
	}
	deadline := time.Now().Add(s.openTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			return protocol.ServiceResult{Status: "started"}
		}
		select {
		case <-exited:
			return protocol.ServiceResult{Status: "failed", Error: fmt.Sprintf("service %q exited before opening port %d", req.Name, ports[0])}
		case <-ctx.Done():
			return protocol.ServiceResult{Status: "failed", Error: ctx.Err().Error()}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return protocol.ServiceResult{Status: "failed", Error: fmt.Sprintf("service %q did not open port %d within %s", req.Name, ports[0], s.openTimeout)}
		}
	}
}

// expand fills upstream's placeholders {ports[N]} and {runtime_path}.
func (s *services) expand(arg string, ports []int) string {
	arg = strings.ReplaceAll(arg, "{runtime_path}", s.runtimePath)
	for i, p := range ports {
		arg = strings.ReplaceAll(arg, fmt.Sprintf("{ports[%d]}", i), strconv.Itoa(p))
	}
	return arg
}

// Shutdown stops a started service.
func (s *services) Shutdown(name string) bool {
	if name == protocol.SSHDService {
		return s.stopSSHD()
	}
	s.mu.Lock()
	proc, ok := s.running[name]
	delete(s.running, name)
	s.mu.Unlock()
	if !ok {
		return false
	}
	_ = syscall.Kill(-proc.pid, syscall.SIGTERM)
	return true
}

// StopAll kills every service's process group.
func (s *services) StopAll() {
	s.stopSSHD()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, proc := range s.running {
		_ = syscall.Kill(-proc.pid, syscall.SIGKILL)
		delete(s.running, name)
	}
}

// Apps lists the services the image defines.
func (s *services) Apps() []protocol.App {
	entries, err := os.ReadDir(s.defsDir)
	if err != nil {
		return []protocol.App{}
	}
	apps := []protocol.App{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		def, found, err := s.definition(name)
		if err != nil || !found {
			continue
		}
		apps = append(apps, protocol.App{Name: name, Protocol: def.Protocol, Ports: def.Ports})
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	return apps
}
