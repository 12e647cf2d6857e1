package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/baiagent/baiagent/proto/sdk"
)

// LaunchSpec says how to start one plugin process. The host and the
// conformance kit (pluginverify) both launch through Launch, so what a
// vendor verifies is what the agent runs.
type LaunchSpec struct {
	// Name is the plugin's name (baiagent-plugin-<name>), for logs.
	Name string
	// Path is the plugin executable.
	Path string
	// Env is the plugin's whole environment; go-plugin adds its own
	// variables (magic cookie, protocol versions, client certificate).
	Env []string
	// Dir is the working directory.
	Dir string
	// Wrapper, when set, is run instead of Path with Path appended to its
	// arguments, so the plugin becomes the wrapper's child (the conformance
	// kit kills such a parent to see the plugin notice).
	Wrapper []string
	// Checksum, when set, is the plugin file's expected SHA-256.
	Checksum     []byte
	StartTimeout time.Duration
	Logger       zerolog.Logger
}

// StartError is a failed launch; Permanent says a restart cannot help
// (another API major, a checksum mismatch).
type StartError struct {
	Err       error
	Permanent bool
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Process is a launched plugin: its go-plugin client, its command and the
// client of its compute service.
type Process struct {
	pc     *plugin.Client
	cmd    *exec.Cmd
	rpc    *sdk.Client
	conn   *grpc.ClientConn
	stderr *lineTail
	exit   *exitWatch
}

// Launch starts the plugin, completes go-plugin's handshake (AutoMTLS,
// API major negotiation) and dispenses the compute service. On failure
// the process is gone and the error is a *StartError.
func Launch(_ context.Context, spec LaunchSpec) (*Process, error) {
	var secure *plugin.SecureConfig
	if spec.Checksum != nil {
		secure = &plugin.SecureConfig{Checksum: spec.Checksum, Hash: sha256.New()}
	}
	// The last stderr lines explain most start failures ("no driver").
	p := &Process{stderr: &lineTail{max: stderrTailLines}}
	if len(spec.Wrapper) > 0 {
		p.cmd = exec.Command(spec.Wrapper[0], append(append([]string(nil), spec.Wrapper[1:]...), spec.Path)...)
	} else {
		p.cmd = exec.Command(spec.Path)
	}
	p.cmd.Env = spec.Env
	p.cmd.Dir = spec.Dir
	// Own process group, so a terminal's ^C goes to the agent only, and the
	// kernel kills the plugin if the agent dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.pc = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              p.cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		SecureConfig:     secure,
		StartTimeout:     spec.StartTimeout,
		Logger:           newPluginLogger(spec.Logger, spec.Name, filepath.Base(p.cmd.Path)),
		Stderr:           io.MultiWriter(p.stderr, newStderrLog(spec.Logger, spec.Name)),
	})
	cp, err := p.pc.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, &StartError{Err: fmt.Errorf("checksum of %s does not match agent.plugin-checksums.%s", spec.Path, spec.Name), Permanent: true}
		}
		// Stopping the process first lets go-plugin drain its stderr.
		p.Kill()
		err, permanent := startError(err, spec.StartTimeout, p.stderr.String())
		return nil, &StartError{Err: err, Permanent: permanent}
	}
	raw, err := cp.Dispense(sdk.PluginName)
	if err != nil {
		p.Kill()
		return nil, &StartError{Err: fmt.Errorf("dispense: %w", err)}
	}
	rpc, ok := raw.(*sdk.Client)
	if !ok {
		p.Kill()
		return nil, &StartError{Err: fmt.Errorf("dispensed %T, want *sdk.Client", raw), Permanent: true}
	}
	p.rpc = rpc
	if gc, ok := cp.(*plugin.GRPCClient); ok {
		p.conn = gc.Conn
	}
	p.exit = watchExit(p.cmd.Process.Pid, p.pc.Exited)
	return p, nil
}

// RPC is the plugin's compute service.
func (p *Process) RPC() *sdk.Client { return p.rpc }

// Conn is the gRPC connection to the plugin (health, controller).
func (p *Process) Conn() *grpc.ClientConn { return p.conn }

// PID is the pid of the launched command (the wrapper's, when wrapped).
func (p *Process) PID() int {
	if p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the launched command has exited.
func (p *Process) Exited() bool { return p.pc.Exited() }

// Done is closed once the launched command has exited (Exited is true).
func (p *Process) Done() <-chan struct{} { return p.exit.exited }

// ExitState describes how the command exited. Call it after Exited.
func (p *Process) ExitState() string {
	// go-plugin sets Exited after cmd.Wait, under its lock: the process
	// state is complete and safe to read then.
	if p.cmd.ProcessState != nil {
		return p.cmd.ProcessState.String()
	}
	return "exited"
}

// Stderr returns the last lines the process wrote to stderr.
func (p *Process) Stderr() string { return p.stderr.String() }

// Ping asks grpc.health.v1 whether the plugin serves; NOT_SERVING is an error.
func (p *Process) Ping(ctx context.Context) error {
	if p.conn == nil {
		return errors.New("plugin client is not gRPC")
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(p.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return err
	}
	// A plugin may answer and still say it cannot serve (a lost driver).
	if st := resp.GetStatus(); st != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("plugin reports %s on grpc.health.v1", st)
	}
	return nil
}

// Kill stops the process: go-plugin asks it to shut down and SIGKILLs it
// after 2 s; then whatever is left of its process group (helpers it spawned,
// a shell's children holding its pipes) is killed too.
func (p *Process) Kill() {
	done := make(chan struct{})
	go func() {
		p.pc.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-done
	if p.exit != nil {
		p.exit.Stop()
	}
}
