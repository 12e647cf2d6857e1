// Package etcdproc runs the agent's embedded etcd as a child process (the
// baiagent-etcd executable) and keeps it running: it waits until the member
// serves, relays its logs into the agent's, restarts it when it dies, and
// stops it on Close. The member is a separate executable so that etcd's
// server code (and the reflection it uses, which keeps the linker from
// dropping unused methods) stays out of the agent's binary: issue 20
// measured 18 MiB less of the agent mapped in memory.
package etcdproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
)

// ExecutableName is the member's executable, found beside the agent's
// unless agent.toml's etcd.embedded-executable names another.
const ExecutableName = "baiagent-etcd"

// Ready is the JSON line baiagent-etcd writes on its stdout once it serves.
type Ready struct {
	Endpoint string `json:"endpoint"`
}

const (
	// DefaultReadyTimeout is a little over the member's own bound
	// (etcdserver.DefaultReadyTimeout), so that its reason arrives first.
	DefaultReadyTimeout = 35 * time.Second
	// stopGrace is how long Close waits for the member to stop by itself
	// once its stdin is closed, before killing it.
	stopGrace = 10 * time.Second
	// The restart backoff after a crash doubles from minBackoff to
	// maxBackoff; a member that served for resetAfter starts again at
	// minBackoff.
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
	resetAfter = time.Minute
)

// Options say what to run.
type Options struct {
	// Executable is the member's path; empty means ExecutableName beside
	// the running executable.
	Executable string
	DataDir    string
	Listen     config.HostPort
	Log        zerolog.Logger
	// ReadyTimeout bounds each start; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// DefaultExecutable is ExecutableName beside the running executable.
func DefaultExecutable() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate %s: %w", ExecutableName, err)
	}
	return filepath.Join(filepath.Dir(self), ExecutableName), nil
}

// Process is a running member and the goroutine that keeps it running.
type Process struct {
	opts     Options
	endpoint string
	stopped  context.Context // ends on Close; restarts wait under it
	stop     context.CancelFunc
	done     chan struct{} // closed when supervise has stopped the member

	mu      sync.Mutex
	current *child // the member now running; nil between a crash and its restart
}

// Start runs the member and waits until it serves (or ctx ends, or
// ReadyTimeout passes). The member then runs until Close, restarted after
// a crash.
func Start(ctx context.Context, opts Options) (*Process, error) {
	if opts.Executable == "" {
		exe, err := DefaultExecutable()
		if err != nil {
			return nil, err
		}
		opts.Executable = exe
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	opts.Log = opts.Log.With().Str("component", "embedded-etcd").Logger()
	if _, err := os.Stat(opts.Executable); err != nil {
		return nil, fmt.Errorf("the embedded etcd's executable (etcd.embedded-executable, default %s beside baiagent): %w", ExecutableName, err)
	}
	p := &Process{opts: opts, done: make(chan struct{})}
	c, ready, err := p.spawn(ctx)
	if err != nil {
		return nil, err
	}
	p.stopped, p.stop = context.WithCancel(context.Background())
	p.endpoint = ready.Endpoint
	p.current = c
	go p.supervise(c)
	return p, nil
}

// Endpoint is the host:port clients dial.
func (p *Process) Endpoint() string { return p.endpoint }

// PID is the running member's process id, 0 while it is being restarted.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current == nil {
		return 0
	}
	return p.current.cmd.Process.Pid
}

// Close stops the member (closing its stdin, then killing it after a
// grace period) and waits until it and every goroutine of this package
// have ended.
func (p *Process) Close() {
	p.stop()
	<-p.done
}

// supervise restarts the member when it dies, until Close.
func (p *Process) supervise(c *child) {
	defer close(p.done)
	backoff := minBackoff
	for {
		started := time.Now()
		select {
		case <-p.stopped.Done():
			c.shutdown(p.opts.Log)
			return
		case <-c.exited:
		}
		p.setCurrent(nil)
		if time.Since(started) >= resetAfter {
			backoff = minBackoff
		}
		p.opts.Log.Error().Str("exit", c.exitText()).Str("reason", c.lastError()).Dur("restart_in", backoff).
			Msg("embedded etcd exited; restarting it")
		for {
			select {
			case <-p.stopped.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			next, _, err := p.spawn(p.stopped)
			if err == nil {
				c = next
				p.setCurrent(c)
				p.opts.Log.Info().Int("pid", c.cmd.Process.Pid).Msg("embedded etcd restarted")
				break
			}
			p.opts.Log.Error().Err(err).Dur("restart_in", backoff).Msg("embedded etcd did not restart")
		}
	}
}

func (p *Process) setCurrent(c *child) {
	p.mu.Lock()
	p.current = c
	p.mu.Unlock()
}

// child is one run of the member.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed once its output is read and it is reaped

	mu      sync.Mutex
	lastErr string // its last error log line
	waitErr error
}

// spawn starts the member and waits until it reports that it serves. On
// failure the member is gone and reaped when spawn returns.
func (p *Process) spawn(ctx context.Context) (*child, Ready, error) {
	cmd := exec.Command(p.opts.Executable, "--data-dir", p.opts.DataDir, "--listen", p.opts.Listen.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, Ready{}, fmt.Errorf("embedded etcd: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, Ready{}, fmt.Errorf("embedded etcd: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, Ready{}, fmt.Errorf("embedded etcd: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, Ready{}, fmt.Errorf("embedded etcd: start %s: %w", p.opts.Executable, err)
	}
	c := &child{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	ready := make(chan Ready, 1)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		readReady(stdout, ready, p.opts.Log)
	}()
	go func() {
		defer readers.Done()
		c.relayLogs(stderr, p.opts.Log)
	}()
	// The pipes are read to their end before Wait, which closes them.
	go func() {
		readers.Wait()
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()

	timer := time.NewTimer(p.opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case r := <-ready:
		return c, r, nil
	case <-c.exited:
		return nil, Ready{}, fmt.Errorf("embedded etcd exited before it served (%s): %s", c.exitText(), c.lastError())
	case <-timer.C:
		c.kill()
		return nil, Ready{}, fmt.Errorf("embedded etcd not ready at %s after %s: %s", p.opts.Listen, p.opts.ReadyTimeout, c.lastError())
	case <-ctx.Done():
		c.kill()
		return nil, Ready{}, fmt.Errorf("embedded etcd: waiting for it to serve: %w", ctx.Err())
	}
}

// readReady reads the member's stdout: its ready line, then nothing (a
// stray line is logged).
func readReady(stdout io.Reader, ready chan<- Ready, log zerolog.Logger) {
	scanner := bufio.NewScanner(stdout)
	sent := false
	for scanner.Scan() {
		var r Ready
		if !sent && json.Unmarshal(scanner.Bytes(), &r) == nil && r.Endpoint != "" {
			ready <- r
			sent = true
			continue
		}
		log.Warn().Str("line", scanner.Text()).Msg("unexpected output of the embedded etcd")
	}
}

// relayLogs re-logs the member's JSON log lines through log, at their
// level, and remembers the last error.
func (c *child) relayLogs(stderr io.Reader, log zerolog.Logger) {
	scanner := bufio.NewScanner(stderr)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		var fields map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &fields); err != nil {
			log.Warn().Str("line", scanner.Text()).Msg("embedded etcd")
			continue
		}
		level, err := zerolog.ParseLevel(fmt.Sprint(fields[zerolog.LevelFieldName]))
		if err != nil || level == zerolog.NoLevel {
			level = zerolog.InfoLevel
		}
		msg, _ := fields[zerolog.MessageFieldName].(string)
		if level >= zerolog.ErrorLevel {
			text := msg
			if e, ok := fields[zerolog.ErrorFieldName]; ok {
				text += ": " + fmt.Sprint(e)
			}
			c.mu.Lock()
			c.lastErr = text
			c.mu.Unlock()
		}
		// The agent's logger adds its own of these.
		for _, k := range []string{zerolog.LevelFieldName, zerolog.MessageFieldName, zerolog.TimestampFieldName, "component"} {
			delete(fields, k)
		}
		log.WithLevel(level).Fields(fields).Msg(msg)
	}
}

func (c *child) lastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == "" {
		return "no error logged"
	}
	return c.lastErr
}

// exitText describes how the member ended; call it once exited is closed.
func (c *child) exitText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var exit *exec.ExitError
	switch {
	case c.waitErr == nil:
		return "exit status 0"
	case errors.As(c.waitErr, &exit):
		return exit.ProcessState.String()
	default:
		return c.waitErr.Error()
	}
}

// kill ends the member at once and waits until it is reaped.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// shutdown closes the member's stdin, which asks it to stop, and kills it
// if it has not stopped after stopGrace.
func (c *child) shutdown(log zerolog.Logger) {
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(stopGrace):
		log.Warn().Dur("grace", stopGrace).Msg("embedded etcd did not stop when asked; killing it")
		c.kill()
	}
}
