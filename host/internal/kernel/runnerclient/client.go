// Package runnerclient is the agent's side of the kernel runner protocol:
// it PUSHes requests to a kernel's runner (container port 2000) and PULLs
// its output (port 2001), queueing output per run as upstream's
// AbstractCodeRunner does, so that an execute call returns what the run
// printed within the flush timeout.
package runnerclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// Execute modes (upstream's execute(mode=...)).
const (
	ModeQuery    = "query"
	ModeBatch    = "batch"
	ModeInput    = "input"
	ModeContinue = "continue"
)

// Result statuses.
const (
	StatusFinished      = "finished"
	StatusContinued     = "continued"
	StatusWaitingInput  = "waiting-input"
	StatusBuildFinished = "build-finished"
	StatusCleanFinished = "clean-finished"
	// StatusExecTimeout ends a run that outlived ExecOptions.ExecTimeout
	// (upstream's watchdog); the agent then destroys the kernel.
	StatusExecTimeout = "exec-timeout"
)

// DefaultFlushTimeout is how long one execute call collects output before
// it returns "continued".
const DefaultFlushTimeout = 2 * time.Second

// Errors a caller decides on.
var (
	ErrClosed      = errors.New("runner connection closed")
	ErrUnknownRun  = errors.New("no such active run")
	ErrInvalidMode = errors.New("invalid execute mode")
	ErrNoReply     = errors.New("runner did not reply")
)

// ConsoleItem is one (type, data) entry of a result's console.
type ConsoleItem struct {
	Type string
	Data string
}

// Result is upstream's execute result: {runId, status, console, exitCode,
// options}.
type Result struct {
	RunID    string
	Status   string
	Console  []ConsoleItem
	ExitCode *int
	Options  map[string]any
}

// Wire returns the result as upstream's dict, console entries as
// [type, data] pairs, ready for msgpack.
func (r Result) Wire() map[string]any {
	console := make([]any, 0, len(r.Console))
	for _, item := range r.Console {
		console = append(console, []any{item.Type, item.Data})
	}
	var exitCode any
	if r.ExitCode != nil {
		exitCode = *r.ExitCode
	}
	var options any
	if r.Options != nil {
		options = r.Options
	}
	return map[string]any{"runId": r.RunID, "status": r.Status, "console": console, "exitCode": exitCode, "options": options}
}

// Batch holds the batch-mode steps (upstream's opts clean/build/exec).
type Batch struct {
	Clean, Build, Exec string
}

// BatchFromOptions reads upstream's batch opts dict; missing and nil
// entries are empty commands.
func BatchFromOptions(opts map[string]any) (Batch, error) {
	var b Batch
	for key, dst := range map[string]*string{"clean": &b.Clean, "build": &b.Build, "exec": &b.Exec} {
		switch v := opts[key].(type) {
		case nil:
		case string:
			*dst = v
		case []byte:
			*dst = string(v)
		default:
			return Batch{}, fmt.Errorf("batch option %q is %T, want a string", key, v)
		}
	}
	return b, nil
}

// ExecOptions tune one execute call.
type ExecOptions struct {
	// FlushTimeout bounds how long output is collected; zero means
	// DefaultFlushTimeout.
	FlushTimeout time.Duration
	// Batch is used in batch mode.
	Batch Batch
	// ExecTimeout bounds a run from its start, across its continue and
	// input calls: a run still going then ends the call with
	// StatusExecTimeout and is given up. Zero: no bound.
	ExecTimeout time.Duration
}

type record struct {
	typ  string
	data []byte
}

type run struct {
	id       string
	started  time.Time
	mu       sync.Mutex
	records  []record
	notify   chan struct{}
	finished chan struct{} // closed when the runner reported "finished"
	done     bool
}

func newRun(id string) *run {
	return &run{id: id, started: time.Now(), notify: make(chan struct{}, 1), finished: make(chan struct{})}
}

// abandon ends a run the runner has not finished: its late output is
// dropped and the next run need not wait for it. The interpreter may still
// be busy with it; after an exec timeout the agent destroys the kernel.
func (r *run) abandon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		r.done = true
		r.records = nil
		close(r.finished)
	}
}

func (r *run) push(rec record) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return // late output of a finished run has no reader
	}
	r.records = append(r.records, rec)
	if rec.typ == protocol.TypeFinished {
		r.done = true
		close(r.finished)
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *run) isFinished() bool {
	select {
	case <-r.finished:
		return true
	default:
		return false
	}
}

// Options tune a Client.
type Options struct {
	// PushIdle closes the input (PUSH) connection once nothing has been
	// sent for this long; the next send opens it again. Zero keeps it open.
	// An idle kernel is most kernels on a busy node, and each open
	// connection holds libzmq's pipe chunks and codec buffers (issue 20);
	// the runner's output (PULL) stays connected, since the runner sends
	// when it has something.
	PushIdle time.Duration
	// OnPushClosed is called (without the client's locks) after an idle
	// input connection was closed: its buffers are back in the C heap.
	OnPushClosed func()
}

// Client is one connection to one kernel's runner. It is safe for
// concurrent use.
type Client struct {
	sendMu    sync.Mutex
	push      *zmq.Socket // nil while the input connection is idle-closed
	inputAddr string
	opts      Options
	lastSend  time.Time
	idleTimer *time.Timer

	mu     sync.Mutex
	active *run

	replies map[string]chan []byte // reply type -> latest replies
	// replyMu serialises request/reply exchanges per reply type; replies
	// carry no request id, so two concurrent ones could be mixed up.
	replyMu map[string]*sync.Mutex

	// wake is the PULL socket's ZMQ_FD under the Go poller (see
	// pollable); Close closes it to end the reader's wait.
	wake       *os.File
	closing    chan struct{}
	readerDone chan struct{}
	closeOnce  sync.Once
}

var replyTypes = []string{
	protocol.TypeStatusReply, protocol.TypeCompletion, protocol.TypeServiceResult,
	protocol.TypeAppsResult, protocol.TypeShutdownResult, protocol.TypeModelServiceResult,
	// Health reports nobody waits for (upstream's agent ignores them);
	// listed so they never land in a run's output.
	protocol.TypeModelServiceStatus,
}

// Dial connects to a runner whose input (port 2000) and output (port 2001)
// are reachable at the given host:port addresses. ZeroMQ connects lazily,
// so Dial succeeds before the runner listens; use WaitReady.
func Dial(inputAddr, outputAddr string, opts Options) (*Client, error) {
	push, err := dialSocket(zmq.PUSH, inputAddr)
	if err != nil {
		return nil, fmt.Errorf("runner input: %w", err)
	}
	pull, err := dialSocket(zmq.PULL, outputAddr)
	if err != nil {
		_ = push.Close()
		return nil, fmt.Errorf("runner output: %w", err)
	}
	wake, err := pollable(pull)
	if err != nil {
		_ = push.Close()
		_ = pull.Close()
		return nil, fmt.Errorf("runner output: %w", err)
	}
	c := &Client{
		push: push, inputAddr: inputAddr, opts: opts, replies: map[string]chan []byte{}, replyMu: map[string]*sync.Mutex{},
		wake: wake, closing: make(chan struct{}), readerDone: make(chan struct{}),
	}
	for _, t := range replyTypes {
		c.replies[t] = make(chan []byte, 8)
		c.replyMu[t] = &sync.Mutex{}
	}
	go c.read(pull)
	return c, nil
}

// dialSocket makes a socket of type typ connected to addr (host:port).
func dialSocket(typ zmq.Type, addr string) (*zmq.Socket, error) {
	s, err := zmq.NewSocket(typ)
	if err != nil {
		return nil, err
	}
	setup := func() error {
		if err := s.SetLinger(0); err != nil {
			return err
		}
		// Docker's port proxy accepts before the runner binds and then
		// drops the connection; zmq retries after this interval, doubling
		// up to the maximum. A runner binds 1-5 ms after `docker start`
		// returns, so the first retries come that soon (10 ms doubling to
		// 1 s had the agent wait 18 ms at the median), and the cap keeps a
		// runner that is down from being dialled more than ten times a
		// second.
		if err := s.SetReconnectIvl(2 * time.Millisecond); err != nil {
			return err
		}
		if err := s.SetReconnectIvlMax(100 * time.Millisecond); err != nil {
			return err
		}
		if typ == zmq.PUSH {
			if err := s.SetSndtimeo(5 * time.Second); err != nil {
				return err
			}
		}
		if err := s.Connect("tcp://" + addr); err != nil {
			return fmt.Errorf("connect %s: %w", addr, err)
		}
		return nil
	}
	if err := setup(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// pollable returns a copy of sock's ZMQ_FD that the Go runtime's poller
// watches. The reader sleeps there instead of in a receive with a timeout:
// an idle kernel then costs no wake-ups and no OS thread (a 200 ms receive
// timeout woke every kernel's reader five times a second, each on a thread
// of its own blocked in libzmq). Closing the copy wakes the reader.
func pollable(sock *zmq.Socket) (*os.File, error) {
	fd, err := sock.GetFd()
	if err != nil {
		return nil, fmt.Errorf("zmq fd: %w", err)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup zmq fd: %w", err)
	}
	// libzmq's signalling fd is already non-blocking (the flag is shared
	// with the copy); os.NewFile registers only such an fd with the poller.
	if err := unix.SetNonblock(dup, true); err != nil {
		_ = unix.Close(dup)
		return nil, fmt.Errorf("zmq fd: %w", err)
	}
	return os.NewFile(uintptr(dup), "zmq-fd"), nil
}

// Close stops the client; pending calls fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		_ = c.wake.Close()
		<-c.readerDone
		c.sendMu.Lock()
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		if c.push != nil {
			_ = c.push.Close()
			c.push = nil
		}
		c.sendMu.Unlock()
	})
	return nil
}

func (c *Client) send(typ string, payload []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	if payload == nil {
		payload = []byte{}
	}
	if c.push == nil {
		push, err := dialSocket(zmq.PUSH, c.inputAddr)
		if err != nil {
			return fmt.Errorf("send %s to runner: reconnect its input: %w", typ, err)
		}
		c.push = push
	}
	if _, err := c.push.SendMessage(typ, payload); err != nil {
		return fmt.Errorf("send %s to runner: %w", typ, err)
	}
	if c.opts.PushIdle > 0 {
		c.lastSend = time.Now()
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(c.opts.PushIdle, c.closeIdlePush)
		} else {
			c.idleTimer.Reset(c.opts.PushIdle)
		}
	}
	return nil
}

// closeIdlePush is the idle timer's: it closes the input connection if
// nothing was sent for PushIdle, and then says so.
func (c *Client) closeIdlePush() {
	if c.closeIfIdle() && c.opts.OnPushClosed != nil {
		c.opts.OnPushClosed()
	}
}

// closeIfIdle closes the input connection if it is open and nothing was
// sent for PushIdle; the timer may fire just as a send resets it, and is
// then set for the rest of the period.
func (c *Client) closeIfIdle() bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	select {
	case <-c.closing:
		return false
	default:
	}
	if c.push == nil {
		return false
	}
	if idle := time.Since(c.lastSend); idle < c.opts.PushIdle {
		c.idleTimer.Reset(c.opts.PushIdle - idle)
		return false
	}
	_ = c.push.Close()
	c.push = nil
	return true
}

// inputConnected says whether the input connection is open (tests).
func (c *Client) inputConnected() bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.push != nil
}

// read owns the PULL socket (ZeroMQ sockets are not goroutine-safe). It
// receives what has arrived and sleeps in the poller until the socket's fd
// signals. libzmq signals that fd on an edge only, and a look at ZMQ_EVENTS
// re-arms it: the wait asks ZMQ_EVENTS first and sleeps only while it says
// nothing is readable, so no message waits for an unrelated wake-up.
func (c *Client) read(pull *zmq.Socket) {
	defer close(c.readerDone)
	defer pull.Close()
	raw, err := c.wake.SyscallConn()
	if err != nil {
		return
	}
	readable := func(uintptr) bool {
		ev, err := pull.GetEvents()
		return err != nil || ev&zmq.POLLIN != 0
	}
	for {
		select {
		case <-c.closing:
			return
		default:
		}
		frames, err := pull.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				if raw.Read(readable) != nil {
					return // the fd was closed: Close is under way
				}
			}
			continue
		}
		msg, err := protocol.Decode(frames)
		if err != nil {
			continue
		}
		if ch, ok := c.replies[msg.Type]; ok {
			select {
			case ch <- msg.Payload:
			default: // nobody asked; keep the newest by dropping one
				select {
				case <-ch:
				default:
				}
				select {
				case ch <- msg.Payload:
				default:
				}
			}
			continue
		}
		c.mu.Lock()
		r := c.active
		c.mu.Unlock()
		if r != nil {
			r.push(record{typ: msg.Type, data: msg.Payload})
		}
	}
}

// Resending a status request while a runner starts: first after
// statusRetryFirst, each wait twice the last, then every statusRetryMax
// (upstream's check_status polls every 0.3 s). The short first waits
// notice a fresh runner within a few milliseconds of its binding; the
// doubling keeps a slow start from queueing hundreds of requests.
const (
	statusRetryFirst = 5 * time.Millisecond
	statusRetryMax   = 300 * time.Millisecond
)

// request sends typ and waits for a reply of replyType, resending after
// retryFirst (when non-zero), then after waits doubling up to retryMax,
// until ctx ends: a runner that is still starting drops what it receives
// before it binds.
func (c *Client) request(ctx context.Context, typ string, payload []byte, replyType string, retryFirst, retryMax time.Duration) ([]byte, error) {
	mu := c.replyMu[replyType]
	mu.Lock()
	defer mu.Unlock()
	ch := c.replies[replyType]
	for drained := false; !drained; {
		select {
		case <-ch:
		default:
			drained = true
		}
	}
	var (
		retry *time.Timer
		tick  <-chan time.Time
		wait  = retryFirst
	)
	if retryFirst > 0 {
		retry = time.NewTimer(wait)
		defer retry.Stop()
		tick = retry.C
	}
	if err := c.send(typ, payload); err != nil {
		return nil, err
	}
	for {
		select {
		case reply := <-ch:
			return reply, nil
		case <-tick:
			if err := c.send(typ, payload); err != nil {
				return nil, err
			}
			wait = min(2*wait, retryMax)
			retry.Reset(wait)
		case <-c.closing:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("%w to %s: %w", ErrNoReply, typ, ctx.Err())
		}
	}
}

// Status asks the runner for its status, resending (statusRetryFirst,
// doubling up to statusRetryMax) until ctx ends.
func (c *Client) Status(ctx context.Context) (protocol.Status, error) {
	raw, err := c.request(ctx, protocol.TypeStatus, nil, protocol.TypeStatusReply, statusRetryFirst, statusRetryMax)
	if err != nil {
		return protocol.Status{}, err
	}
	var st protocol.Status
	if err := protocol.DecodeJSON(raw, &st); err != nil {
		return protocol.Status{}, fmt.Errorf("runner status: %w", err)
	}
	return st, nil
}

// Complete asks for completions of the code at the cursor.
func (c *Client) Complete(ctx context.Context, req protocol.CompletionRequest) ([]string, error) {
	raw, err := c.request(ctx, protocol.TypeComplete, protocol.MustJSON(req), protocol.TypeCompletion, 0, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	if err := protocol.DecodeJSON(raw, &out); err != nil {
		return nil, fmt.Errorf("runner completions: %w", err)
	}
	return out, nil
}

// StartService asks the runner to start a service process.
func (c *Client) StartService(ctx context.Context, req protocol.ServiceRequest) (protocol.ServiceResult, error) {
	raw, err := c.request(ctx, protocol.TypeStartService, protocol.MustJSON(req), protocol.TypeServiceResult, 0, 0)
	if err != nil {
		return protocol.ServiceResult{}, err
	}
	var res protocol.ServiceResult
	if err := protocol.DecodeJSON(raw, &res); err != nil {
		return protocol.ServiceResult{}, fmt.Errorf("runner service result: %w", err)
	}
	return res, nil
}

// StartModelService asks the runner to start a model service and waits
// for its model-service-result until ctx ends.
func (c *Client) StartModelService(ctx context.Context, model protocol.ModelInfo) (protocol.ServiceResult, error) {
	raw, err := c.request(ctx, protocol.TypeStartModelService, protocol.MustJSON(model), protocol.TypeModelServiceResult, 0, 0)
	if err != nil {
		return protocol.ServiceResult{}, err
	}
	var res protocol.ServiceResult
	if err := protocol.DecodeJSON(raw, &res); err != nil {
		return protocol.ServiceResult{}, fmt.Errorf("runner model service result: %w", err)
	}
	return res, nil
}

// ShutdownService stops a service the runner started.
func (c *Client) ShutdownService(ctx context.Context, name string) error {
	_, err := c.request(ctx, protocol.TypeShutdownService, []byte(name), protocol.TypeShutdownResult, 0, 0)
	return err
}

// GetApps lists the services the image defines.
func (c *Client) GetApps(ctx context.Context) (protocol.AppsResult, error) {
	raw, err := c.request(ctx, protocol.TypeGetApps, nil, protocol.TypeAppsResult, 0, 0)
	if err != nil {
		return protocol.AppsResult{}, err
	}
	var res protocol.AppsResult
	if err := protocol.DecodeJSON(raw, &res); err != nil {
		return protocol.AppsResult{}, fmt.Errorf("runner apps: %w", err)
	}
	return res, nil
}

// Interrupt sends SIGINT to the running code.
func (c *Client) Interrupt() error {
	return c.send(protocol.TypeInterrupt, nil)
}

// Execute runs or continues run runID and returns what it printed within
// the flush timeout. A new query or batch run waits until the previous run
// finished, as upstream queues runs.
func (c *Client) Execute(ctx context.Context, runID, mode, code string, opts ExecOptions) (Result, error) {
	flush := opts.FlushTimeout
	if flush <= 0 {
		flush = DefaultFlushTimeout
	}
	r, err := c.attach(ctx, runID, mode, code, opts.Batch)
	if err != nil {
		return Result{}, err
	}
	var deadline time.Time
	if opts.ExecTimeout > 0 {
		deadline = r.started.Add(opts.ExecTimeout)
	}
	return r.collect(ctx, flush, deadline, c.closing)
}

// Attach makes runID the active run when none is active, without sending
// anything: a restarted agent collects, with continue, the output of a run
// an earlier connection started.
func (c *Client) Attach(runID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == nil || c.active.isFinished() {
		c.active = newRun(runID)
	}
}

func (c *Client) attach(ctx context.Context, runID, mode, code string, batch Batch) (*run, error) {
	switch mode {
	case ModeQuery, ModeBatch:
		for {
			c.mu.Lock()
			prev := c.active
			if prev == nil || prev.isFinished() {
				r := newRun(runID)
				c.active = r
				c.mu.Unlock()
				return r, c.feed(mode, code, batch)
			}
			c.mu.Unlock()
			if prev.id == runID {
				return prev, nil // a repeated start continues the run
			}
			select {
			case <-prev.finished:
			case <-c.closing:
				return nil, ErrClosed
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for run %s to finish: %w", prev.id, ctx.Err())
			}
		}
	case ModeInput, ModeContinue:
		c.mu.Lock()
		r := c.active
		c.mu.Unlock()
		if r == nil || r.id != runID {
			return nil, fmt.Errorf("%w: %q", ErrUnknownRun, runID)
		}
		if mode == ModeInput {
			return r, c.send(protocol.TypeInput, []byte(code))
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrInvalidMode, mode)
}

func (c *Client) feed(mode, code string, batch Batch) error {
	if mode == ModeQuery {
		return c.send(protocol.TypeCode, []byte(code))
	}
	for _, step := range []struct{ typ, cmd string }{
		{protocol.TypeClean, batch.Clean}, {protocol.TypeBuild, batch.Build}, {protocol.TypeExec, batch.Exec},
	} {
		if err := c.send(step.typ, []byte(step.cmd)); err != nil {
			return err
		}
	}
	return nil
}

// collect gathers records until a terminal one, the flush timeout, or the
// run's deadline (zero: none).
func (r *run) collect(ctx context.Context, flush time.Duration, deadline time.Time, closing <-chan struct{}) (Result, error) {
	res := Result{RunID: r.id, Console: []ConsoleItem{}}
	timer := time.NewTimer(flush)
	defer timer.Stop()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		watchdog := time.NewTimer(time.Until(deadline))
		defer watchdog.Stop()
		expired = watchdog.C
	}
	for {
		for _, rec := range r.takeUntilTerminal() {
			if done := res.add(rec); done {
				return res, nil
			}
		}
		select {
		case <-r.notify:
		case <-timer.C:
			// Records may have arrived with the timeout; take them first.
			for _, rec := range r.takeUntilTerminal() {
				if done := res.add(rec); done {
					return res, nil
				}
			}
			res.Status = StatusContinued
			return res, nil
		case <-expired:
			for _, rec := range r.takeUntilTerminal() {
				if done := res.add(rec); done {
					return res, nil
				}
			}
			r.abandon()
			res.Status = StatusExecTimeout
			return res, nil
		case <-closing:
			return res, ErrClosed
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// takeUntilTerminal takes queued records up to and including the first
// terminal one, leaving later records (the next batch step) queued.
func (r *run) takeUntilTerminal() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rec := range r.records {
		if isTerminal(rec.typ) {
			out := r.records[: i+1 : i+1]
			r.records = r.records[i+1:]
			if len(r.records) > 0 {
				select {
				case r.notify <- struct{}{}:
				default:
				}
			}
			return out
		}
	}
	out := r.records
	r.records = nil
	return out
}

func isTerminal(typ string) bool {
	switch typ {
	case protocol.TypeFinished, protocol.TypeBuildFinished, protocol.TypeCleanFinished, protocol.TypeWaitingInput:
		return true
	}
	return false
}

// add appends one record; it returns true when the record ends the call.
// Consecutive stdout (or stderr) chunks merge into one console entry, as
// upstream's aggregate_console does.
func (res *Result) add(rec record) bool {
	switch rec.typ {
	case protocol.TypeFinished, protocol.TypeBuildFinished, protocol.TypeCleanFinished:
		st, _ := protocol.DecodeExitStatus(rec.data)
		code := st.ExitCode
		res.ExitCode = &code
		res.Status = map[string]string{
			protocol.TypeFinished: StatusFinished, protocol.TypeBuildFinished: StatusBuildFinished,
			protocol.TypeCleanFinished: StatusCleanFinished,
		}[rec.typ]
		return true
	case protocol.TypeWaitingInput:
		opts := map[string]any{}
		_ = json.Unmarshal(rec.data, &opts)
		res.Status = StatusWaitingInput
		res.Options = opts
		return true
	case protocol.TypeStdout, protocol.TypeStderr:
		if n := len(res.Console); n > 0 && res.Console[n-1].Type == rec.typ {
			res.Console[n-1].Data += string(rec.data)
			return false
		}
	}
	res.Console = append(res.Console, ConsoleItem{Type: rec.typ, Data: string(rec.data)})
	return false
}
