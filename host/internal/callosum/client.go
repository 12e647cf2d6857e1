package callosum

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
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
// There is no socket-owning goroutine: a caller sends on the DEALER itself
// (zmq sockets need serialized access; sockMu is the memory barrier libzmq
// asks for) and one waiting caller at a time, the reader, sleeps on the
// socket's file descriptor and hands replies to their callers. A sequential
// call therefore costs no goroutine hand-off at all.
type Client struct {
	opts ClientOptions
	zctx *zmq.Context
	pong chan struct{}
	seq  atomic.Uint32

	sockMu sync.Mutex // guards dealer and closed
	dealer *zmq.Socket
	closed bool
	fd     int // the DEALER's ZMQ_FD: readable when events may be pending

	// reader is a token: its holder polls fd for everyone.
	reader chan struct{}
	// wakeR/wakeW is a pipe that wakes the reader when another goroutine
	// drained the socket (and so consumed the fd's edge) on its behalf.
	wakeR, wakeW int
	closing      chan struct{}
	once         sync.Once

	mu      sync.Mutex
	waiting map[callKey]chan *Response
}

// readerPollTimeout bounds how long the reader sleeps before it looks at
// cancellation again.
const readerPollTimeout = 20 // ms

// Dial connects to endpoint (e.g. "tcp://127.0.0.1:6001") and completes
// the PING handshake.
func Dial(ctx context.Context, endpoint string, opts ClientOptions) (*Client, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 5 * time.Second
	}
	c := &Client{
		opts:    opts,
		pong:    make(chan struct{}, 1),
		reader:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		waiting: map[callKey]chan *Response{},
	}
	c.reader <- struct{}{}
	var err error
	if c.zctx, err = zmq.NewContext(); err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		_ = c.zctx.Term()
		return nil, fmt.Errorf("wake pipe: %w", err)
	}
	c.wakeR, c.wakeW = pipe[0], pipe[1]
	if err := c.connect(endpoint); err != nil {
		if c.dealer != nil {
			c.dealer.Close()
		}
		_ = c.zctx.Term()
		unix.Close(c.wakeR)
		unix.Close(c.wakeW)
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
	if err := c.SendFrames([]byte(FramePing), []byte{}, []byte{}); err != nil {
		return err
	}
	timer := time.NewTimer(c.opts.HandshakeTimeout)
	defer timer.Stop()
	_, err := await(ctx, c, c.pong, timer.C)
	if errors.Is(err, errTimeout) {
		return ErrAuthentication
	}
	return err
}

var errTimeout = errors.New("timeout")

// await waits for a value on ch. While it waits it may become the reader
// and pull everyone's replies off the socket.
func await[T any](ctx context.Context, c *Client, ch <-chan T, timeout <-chan time.Time) (T, error) {
	var zero T
	for {
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-timeout:
			return zero, errTimeout
		case <-c.closing:
			return zero, ErrClosed
		case <-c.reader:
			v, err := read(ctx, c, ch, timeout)
			c.reader <- struct{}{}
			return v, err
		}
	}
}

// read is await for the reader: it sleeps on the socket's fd and the wake
// pipe, drains the socket and delivers, until its own value arrives.
func read[T any](ctx context.Context, c *Client, ch <-chan T, timeout <-chan time.Time) (T, error) {
	var zero T
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wakeR), Events: unix.POLLIN}}
	var scratch [64]byte
	for {
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-timeout:
			return zero, errTimeout
		case <-c.closing:
			return zero, ErrClosed
		default:
		}
		c.sockMu.Lock()
		if c.closed {
			c.sockMu.Unlock()
			return zero, ErrClosed
		}
		c.drainLocked(false)
		c.sockMu.Unlock()
		select {
		case v := <-ch:
			return v, nil
		default:
		}
		if _, err := unix.Poll(fds, readerPollTimeout); err != nil && !errors.Is(err, unix.EINTR) {
			return zero, fmt.Errorf("callosum client poll: %w", err)
		}
		if fds[1].Revents != 0 {
			for {
				if n, _ := unix.Read(c.wakeR, scratch[:]); n <= 0 {
					break
				}
			}
		}
	}
}

// drainLocked receives every message waiting on the DEALER and delivers it.
// A drain by a non-reader consumed the fd's edge, so it wakes the reader.
func (c *Client) drainLocked(wakeReader bool) {
	delivered := false
	for {
		frames, err := c.dealer.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			break
		}
		c.deliver(frames)
		delivered = true
	}
	if wakeReader && delivered {
		_, _ = unix.Write(c.wakeW, []byte{1})
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
	c.sockMu.Lock()
	defer c.sockMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	for {
		_, err := c.dealer.SendMessage(frames)
		if err != nil && zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rpc send: %w", err)
		}
		break
	}
	// Sending processes the socket's pending commands and may consume the
	// fd's edge for a reply already here: take it now.
	c.drainLocked(true)
	return nil
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
	if err := c.SendFrames([]byte(FrameUpper), header.Encode(), body); err != nil {
		forget()
		return nil, err
	}
	resp, err := await(ctx, c, ch, nil)
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
		close(c.closing)
		<-c.reader // the reader, if any, has left the socket alone
		c.sockMu.Lock()
		c.closed = true
		c.dealer.Close()
		c.sockMu.Unlock()
		_ = c.zctx.Term()
		unix.Close(c.wakeR)
		unix.Close(c.wakeW)
	})
	return nil
}
