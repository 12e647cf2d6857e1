package callosum

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// ErrAuthentication is returned when the server does not answer the PING
// handshake in time, which is how a CURVE rejection looks to a client
// (callosum raises AuthenticationError the same way).
var ErrAuthentication = errors.New("callosum: no PONG from the server (authentication failed or server unreachable)")

// ErrCancelled is returned for a CANCELLED reply.
var ErrCancelled = errors.New("callosum: call cancelled by the server")

// ErrClosed is returned for calls on a closed client.
var ErrClosed = errors.New("callosum: client closed")

// RemoteError is a FAILURE (the handler raised) or ERROR (the RPC layer
// failed) reply.
type RemoteError struct {
	Type MessageType
	ErrorInfo
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc %s: %s: %s", e.Type, e.Name, e.Repr)
}

// ClientOptions configures a Client; zero values take the defaults.
type ClientOptions struct {
	// HandshakeTimeout bounds the PING/PONG handshake (default 5 s, as upstream).
	HandshakeTimeout time.Duration
	// Certificate (the manager's keypair) and ServerPublicKey (the agent's,
	// z85) turn on CURVE.
	Certificate     *Certificate
	ServerPublicKey string
	// OrderKeyAsStr sends okey "" as str like the legacy agent_cache path;
	// by default it is b"" as bin, like PeerInvoker.
	OrderKeyAsStr bool
	Logger        zerolog.Logger
}

// Response is a reply as received.
type Response struct {
	Header  Header
	Meta    []byte
	Payload []byte
}

// Err converts a non-RESULT reply into an error.
func (r *Response) Err() error {
	switch r.Header.Type {
	case TypeResult:
		return nil
	case TypeFailure, TypeError:
		info, err := DecodeErrorInfo(r.Meta)
		if err != nil {
			return fmt.Errorf("rpc %s with unreadable metadata: %w", r.Header.Type, err)
		}
		return &RemoteError{Type: r.Header.Type, ErrorInfo: info}
	case TypeCancelled:
		return ErrCancelled
	}
	return fmt.Errorf("rpc: unexpected reply type %s", r.Header.Type)
}

type callKey struct {
	method string
	okey   OrderKey
	seq    uint64
}

// Client is the manager's side of the protocol. Call may be used from many
// goroutines at once.
//
// There is no goroutine of the client's own: the callers take turns at the
// DEALER (zmq sockets are not goroutine-safe). One waiting caller at a time
// is the leader. It alone uses the socket: it sends what others queued,
// receives every reply and hands each to its caller, and sleeps in poll(2)
// on the socket's ZMQ_FD and on an eventfd that a caller who queues writes
// when the leader sleeps. A caller that finds no leader becomes it and
// sends its request itself, so a call made alone costs no hand-off between
// threads. Under load the leader sends and receives in batches, and
// libzmq's per-operation mailbox checks (a poll(2) for each receive that
// finds nothing) are paid once per batch. When the leader's own reply has
// come, it hands the role to a waiting caller.
type Client struct {
	opts ClientOptions
	zctx *zmq.Context
	pong chan struct{}
	seq  atomic.Uint32

	dealer *zmq.Socket // used by the leader alone
	fd     int         // the DEALER's ZMQ_FD: readable when events may be pending
	wakeFd int         // eventfd: wakes a sleeping leader

	promote chan struct{} // hands the leader's role to a waiting caller
	closing chan struct{}
	once    sync.Once
	leaders sync.WaitGroup // the leader, while there is one

	mu       sync.Mutex // guards everything below
	leader   bool       // some caller holds the socket
	sleeping bool       // the leader is in poll(2)
	closed   bool
	queue    [][][]byte // requests for the leader to send
	waiting  map[callKey]chan *Response
}

// leaderPollTimeout bounds how long the leader sleeps before it looks at
// its own cancellation again.
const leaderPollTimeout = 20 // ms

// Dial connects to endpoint (e.g. "tcp://127.0.0.1:6001") and completes
// the PING handshake.
func Dial(ctx context.Context, endpoint string, opts ClientOptions) (*Client, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 5 * time.Second
	}
	c := &Client{
		opts:    opts,
		pong:    make(chan struct{}, 1),
		promote: make(chan struct{}, 1),
		closing: make(chan struct{}),
		waiting: map[callKey]chan *Response{},
	}
	var err error
	if c.zctx, err = zmq.NewContext(); err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	if c.wakeFd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		_ = c.zctx.Term()
		return nil, fmt.Errorf("client eventfd: %w", err)
	}
	if err := c.connect(endpoint); err != nil {
		if c.dealer != nil {
			c.dealer.Close()
		}
		_ = c.zctx.Term()
		unix.Close(c.wakeFd)
		return nil, err
	}
	if err := c.handshake(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) connect(endpoint string) error {
	dealer, err := c.zctx.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("dealer socket: %w", err)
	}
	c.dealer = dealer
	_ = dealer.SetLinger(socketLinger)
	_ = dealer.SetSndhwm(0)
	_ = dealer.SetRcvhwm(0)
	_ = dealer.SetTcpKeepalive(1)
	if c.opts.Certificate != nil {
		if c.opts.ServerPublicKey == "" {
			return errors.New("rpc auth: the agent public key is missing")
		}
		for _, set := range []func() error{
			func() error { return dealer.SetCurveServerkey(c.opts.ServerPublicKey) },
			func() error { return dealer.SetCurvePublickey(c.opts.Certificate.PublicKey) },
			func() error { return dealer.SetCurveSecretkey(c.opts.Certificate.SecretKey) },
		} {
			if err := set(); err != nil {
				return fmt.Errorf("rpc auth: %w", err)
			}
		}
	}
	if err := dealer.Connect(endpoint); err != nil {
		return fmt.Errorf("rpc connect %s: %w", endpoint, err)
	}
	if c.fd, err = dealer.GetFd(); err != nil {
		return fmt.Errorf("dealer fd: %w", err)
	}
	return nil
}

func (c *Client) handshake(ctx context.Context) error {
	leading, err := c.send([][]byte{[]byte(FramePing), {}, {}}, true)
	if err != nil {
		return err
	}
	timer := time.NewTimer(c.opts.HandshakeTimeout)
	defer timer.Stop()
	_, err = await(ctx, c, c.pong, timer.C, leading)
	if errors.Is(err, errTimeout) {
		return ErrAuthentication
	}
	return err
}

var errTimeout = errors.New("timeout")

// send sends frames: itself when there is no leader (and then it is the
// leader), or else through the leader's queue. It reports whether the
// caller now leads; with stay false it gives the role up before returning.
func (c *Client) send(frames [][]byte, stay bool) (leading bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, ErrClosed
	}
	if c.leader {
		c.queue = append(c.queue, frames)
		c.wakeLocked()
		c.mu.Unlock()
		return false, nil
	}
	c.becomeLeaderLocked()
	c.mu.Unlock()
	if err := sendAll(c.dealer, frames); err != nil {
		c.lead(nil, nil)
		return false, fmt.Errorf("rpc send: %w", err)
	}
	if !stay {
		c.lead(nil, nil)
		return false, nil
	}
	return true, nil
}

func (c *Client) becomeLeaderLocked() {
	c.leader = true
	c.leaders.Add(1)
}

// takeLead makes a promoted caller the leader, unless someone else already
// is (or the client is closed).
func (c *Client) takeLead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader || c.closed {
		return false
	}
	c.becomeLeaderLocked()
	return true
}

func (c *Client) wakeLocked() {
	if c.sleeping {
		c.sleeping = false
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(c.wakeFd, one[:])
	}
}

// await waits for a value on ch: as a follower, or as the leader when the
// caller is (or is promoted to) one.
func await[T any](ctx context.Context, c *Client, ch <-chan T, timeout <-chan time.Time, leading bool) (T, error) {
	var zero T
	for {
		if leading {
			var v T
			got := false
			err := c.lead(func() bool {
				select {
				case v = <-ch:
					got = true
				default:
				}
				return got
			}, func() error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timeout:
					return errTimeout
				case <-c.closing:
					return ErrClosed
				default:
					return nil
				}
			})
			if got {
				return v, nil
			}
			return zero, err
		}
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-timeout:
			return zero, errTimeout
		case <-c.closing:
			return zero, ErrClosed
		case <-c.promote:
			leading = c.takeLead()
		}
	}
}

// lead is the leader's loop: send what is queued, receive and deliver what
// has come, and sleep, until done (nil: after one round) or stop (nil: never)
// says so; then the role goes to a waiting caller, if there is one.
func (c *Client) lead(done func() bool, stop func() error) error {
	defer c.leaders.Done()
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wakeFd), Events: unix.POLLIN}}
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, frames := range batch {
			if err := sendAll(c.dealer, frames); err != nil {
				c.opts.Logger.Warn().Err(err).Msg("rpc client: send failed")
			}
		}
		// libzmq signals the fd only on an edge, after a receive that found
		// nothing (and a send may have taken the edge of a reply already
		// here), so the leader always receives until nothing is left
		// before it sleeps or steps down.
		if err := receiveAll(c.dealer, c.deliver); err != nil {
			c.resign()
			return fmt.Errorf("rpc receive: %w", err)
		}
		if done == nil || done() {
			if c.resignIfIdle() {
				return nil
			}
			continue
		}
		if stop != nil {
			if err := stop(); err != nil {
				c.resign()
				return err
			}
		}
		c.mu.Lock()
		if len(c.queue) > 0 {
			c.mu.Unlock()
			continue
		}
		c.sleeping = true
		c.mu.Unlock()
		// As the server's socket owner: ZMQ_EVENTS is the last word before
		// sleeping on the edge-triggered fd (see socketOwner.receiveOrSleep).
		timeout := leaderPollTimeout
		if ev, err := c.dealer.GetEvents(); err == nil && ev&zmq.POLLIN != 0 {
			timeout = 0
		}
		_, err := unix.Poll(fds, timeout)
		c.mu.Lock()
		c.sleeping = false
		c.mu.Unlock()
		if fds[1].Revents != 0 {
			var buf [8]byte
			_, _ = unix.Read(c.wakeFd, buf[:])
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			c.resign()
			return fmt.Errorf("rpc client poll: %w", err)
		}
	}
}

// resignIfIdle steps down unless requests are queued, which the leader
// must send first.
func (c *Client) resignIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 && !c.closed {
		return false
	}
	c.resignLocked()
	return true
}

// resign steps down after sending what is queued.
func (c *Client) resign() {
	for !c.resignIfIdle() {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, frames := range batch {
			if err := sendAll(c.dealer, frames); err != nil {
				c.opts.Logger.Warn().Err(err).Msg("rpc client: send failed")
			}
		}
	}
}

func (c *Client) resignLocked() {
	c.leader = false
	if len(c.waiting) > 0 {
		select {
		case c.promote <- struct{}{}:
		default: // a promotion is pending already
		}
	}
}

func (c *Client) deliver(frames [][]byte) {
	if len(frames) >= 1 && string(frames[0]) == FramePong {
		select {
		case c.pong <- struct{}{}:
		default:
		}
		return
	}
	if len(frames) != 3 || string(frames[0]) != FrameUpper {
		c.opts.Logger.Warn().Int("frames", len(frames)).Msg("rpc client: ignoring malformed reply")
		return
	}
	header, err := DecodeHeader(frames[1])
	if err != nil {
		c.opts.Logger.Warn().Err(err).Msg("rpc client: ignoring reply with bad header")
		return
	}
	meta, payload, err := DecodeBody(frames[2], header.Zip, 0)
	if err != nil {
		c.opts.Logger.Warn().Err(err).Msg("rpc client: ignoring reply with bad body")
		return
	}
	key := callKey{method: header.Method, okey: header.OrderKey, seq: header.Seq}
	c.mu.Lock()
	ch, ok := c.waiting[key]
	delete(c.waiting, key)
	c.mu.Unlock()
	if !ok {
		c.opts.Logger.Warn().Str("method", header.Method).Uint64("seq", header.Seq).Msg("rpc client: reply to no waiting call")
		return
	}
	ch <- &Response{Header: header, Meta: meta, Payload: payload}
}

// SendFrames sends raw frames (after the DEALER's own routing) without
// waiting for anything; tests use it for malformed messages.
func (c *Client) SendFrames(frames ...[]byte) error {
	_, err := c.send(frames, false)
	return err
}

// NextHeader returns a FUNCTION header for method with the next seq.
func (c *Client) NextHeader(method string) Header {
	return Header{
		Type:     TypeFunction,
		Method:   method,
		OrderKey: OrderKey{IsStr: c.opts.OrderKeyAsStr},
		Seq:      uint64(c.seq.Add(1) - 1),
	}
}

// Exchange sends header and an already encoded body frame and waits for the
// reply matched by (meth, okey, seq).
func (c *Client) Exchange(ctx context.Context, header Header, body []byte) (*Response, error) {
	key := callKey{method: header.Method, okey: header.OrderKey, seq: header.Seq}
	ch := make(chan *Response, 1)
	c.mu.Lock()
	c.waiting[key] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.waiting, key)
		c.mu.Unlock()
	}
	leading, err := c.send([][]byte{[]byte(FrameUpper), header.Encode(), body}, true)
	if err != nil {
		forget()
		return nil, err
	}
	resp, err := await(ctx, c, ch, nil, leading)
	if err != nil {
		forget()
		return nil, err
	}
	return resp, nil
}

// Call invokes method with an application msgpack payload and returns the
// RESULT payload, or the reply as an error.
func (c *Client) Call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	header := c.NextHeader(method)
	resp, err := c.Exchange(ctx, header, EncodeBody(MetaFunction, payload, header.Zip))
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		return nil, err
	}
	return resp.Payload, nil
}

// Invoke calls method with the request envelope {"args", "kwargs"} and
// decodes the result.
func (c *Client) Invoke(ctx context.Context, method string, args []any, kwargs map[string]any) (any, error) {
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	payload, err := EncodeEnvelope(args, kwargs)
	if err != nil {
		return nil, err
	}
	result, err := c.Call(ctx, method, payload)
	if err != nil {
		return nil, err
	}
	value, err := wiremsg.Unmarshal(result)
	if err != nil {
		return nil, fmt.Errorf("rpc %s result: %w", method, err)
	}
	return value, nil
}

// EncodeEnvelope writes {"args": [...], "kwargs": {...}} in that order, as
// PeerInvoker does.
func EncodeEnvelope(args []any, kwargs map[string]any) ([]byte, error) {
	argsBytes, err := wiremsg.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("rpc args: %w", err)
	}
	kwargsBytes, err := wiremsg.Marshal(kwargs)
	if err != nil {
		return nil, fmt.Errorf("rpc kwargs: %w", err)
	}
	out := make([]byte, 0, 16+len(argsBytes)+len(kwargsBytes))
	out = append(out, 0x82, 0xa4, 'a', 'r', 'g', 's')
	out = append(out, argsBytes...)
	out = append(out, 0xa6, 'k', 'w', 'a', 'r', 'g', 's')
	return append(out, kwargsBytes...), nil
}

// Close stops the client; calls in flight fail.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true // nobody becomes leader any more
		c.wakeLocked()
		c.mu.Unlock()
		close(c.closing)
		c.leaders.Wait() // the leader, if any, has left the socket alone
		c.dealer.Close()
		_ = c.zctx.Term()
		unix.Close(c.wakeFd)
	})
	return nil
}
