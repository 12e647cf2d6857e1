package callosum

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
)

// Request is one FUNCTION message.
type Request struct {
	Peer    []byte
	Header  Header
	Payload []byte // application msgpack
}

// Reply is a handler's answer: RESULT with Payload, FAILURE or ERROR with
// Error, or CANCELLED.
type Reply struct {
	Type    MessageType
	Payload []byte
	Error   ErrorInfo
}

// HandlerFunc serves one request. It runs on its own goroutine; ctx is
// cancelled when the server gives up on in-flight calls at shutdown.
type HandlerFunc func(ctx context.Context, req *Request) Reply

// ServerOptions configures a Server; zero values take the defaults.
type ServerOptions struct {
	// Endpoint is a ZeroMQ endpoint, e.g. "tcp://0.0.0.0:6001" or
	// "tcp://127.0.0.1:*" for an ephemeral port.
	Endpoint string
	// Certificate, with ManagerPublicKey, turns on CURVE authentication.
	Certificate      *Certificate
	ManagerPublicKey string
	// MaxBodySize bounds a request body (default 64 MiB). Bodies up to twice
	// that get an ERROR reply; libzmq drops larger messages (MAXMSGSIZE) and
	// the peer's connection with them.
	MaxBodySize int
	// MaxConcurrency bounds the handlers running at once (default 64).
	MaxConcurrency int
	// MaxPending bounds accepted requests not yet answered (default 4096);
	// above it requests get an ERROR "ServerBusy" reply.
	MaxPending int
	// ShutdownGrace is how long in-flight calls may finish after Serve's
	// context ends before their contexts are cancelled (default 5 s).
	ShutdownGrace time.Duration
	// Inline reports methods cheap enough to answer on the socket's own
	// goroutine (no I/O, no locks held for long): ping and lookups in
	// memory. They skip two goroutine hand-offs and the reply queue, which is
	// most of a round trip. Everything else runs on its own goroutine.
	Inline func(method string) bool
	Logger zerolog.Logger
}

const (
	defaultMaxBodySize    = 64 << 20
	defaultMaxConcurrency = 64
	defaultMaxPending     = 4096
	defaultShutdownGrace  = 5 * time.Second
	socketLinger          = 100 * time.Millisecond // upstream's LINGER
)

// Server is a callosum ROUTER server. One goroutine (Serve's) owns the
// ROUTER socket; handlers run concurrently and queue their replies for it.
type Server struct {
	opts     ServerOptions
	handler  HandlerFunc
	zctx     *zmq.Context
	router   *zmq.Socket
	zap      *zapHandler
	endpoint string
	log      zerolog.Logger
}

// NewServer binds the ROUTER socket (so that address errors surface now) and
// starts the ZAP handler when CURVE is configured. Serve must follow, or Close.
func NewServer(opts ServerOptions, handler HandlerFunc) (*Server, error) {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = defaultMaxBodySize
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = defaultMaxConcurrency
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = defaultMaxPending
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = defaultShutdownGrace
	}
	s := &Server{opts: opts, handler: handler, log: opts.Logger}
	var err error
	if s.zctx, err = zmq.NewContext(); err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	if err := s.setup(); err != nil {
		s.closeSockets()
		return nil, err
	}
	return s, nil
}

func (s *Server) setup() error {
	curve := s.opts.Certificate != nil
	if curve {
		if !zmq.HasCurve() {
			return errors.New("rpc auth: libzmq is built without CURVE")
		}
		if s.opts.Certificate.SecretKey == "" {
			return errors.New("rpc auth: the agent keypair has no secret key")
		}
		if s.opts.ManagerPublicKey == "" {
			return errors.New("rpc auth: the manager public key is missing")
		}
		zap, err := startZAP(s.zctx, s.opts.ManagerPublicKey, s.log)
		if err != nil {
			return err
		}
		s.zap = zap
		go zap.serve()
	}
	router, err := s.zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		return fmt.Errorf("router socket: %w", err)
	}
	s.router = router
	_ = router.SetLinger(socketLinger)
	_ = router.SetSndhwm(0)
	_ = router.SetRcvhwm(0)
	if err := router.SetMaxmsgsize(int64(2*s.opts.MaxBodySize) + 64<<10); err != nil {
		return fmt.Errorf("router MAXMSGSIZE: %w", err)
	}
	if curve {
		if err := router.SetZapDomain(zapDomain); err != nil {
			return fmt.Errorf("router ZAP domain: %w", err)
		}
		if err := router.SetCurveServer(1); err != nil {
			return fmt.Errorf("router CURVE_SERVER: %w", err)
		}
		if err := router.SetCurveSecretkey(s.opts.Certificate.SecretKey); err != nil {
			return fmt.Errorf("router CURVE_SECRETKEY: %w", err)
		}
	}
	if err := router.Bind(s.opts.Endpoint); err != nil {
		return fmt.Errorf("rpc listen %s: %w", s.opts.Endpoint, err)
	}
	if s.endpoint, err = router.GetLastEndpoint(); err != nil {
		return fmt.Errorf("rpc listen %s: %w", s.opts.Endpoint, err)
	}
	return nil
}

// Endpoint is the bound endpoint, with the real port for "*".
func (s *Server) Endpoint() string { return s.endpoint }

// PublicKey is the agent's z85 CURVE public key, or "" without CURVE.
func (s *Server) PublicKey() string {
	if s.opts.Certificate == nil {
		return ""
	}
	return s.opts.Certificate.PublicKey
}

func (s *Server) closeSockets() {
	if s.router != nil {
		s.router.Close()
	}
	// Term waits for every socket of the context (the ZAP socket closes
	// itself on ETERM), so run it last.
	_ = s.zctx.Term()
}

// serveState is owned by Serve's goroutine.
type serveState struct {
	inflight int
	draining bool
	owner    *socketOwner
	sem      chan struct{}
	handlers context.Context
}

// Serve answers until ctx ends, then stops taking requests, lets in-flight
// calls finish for ShutdownGrace, cancels the rest, sends what they reply,
// and closes the socket.
func (s *Server) Serve(ctx context.Context) error {
	defer s.closeSockets()
	owner, err := newSocketOwner(s.router)
	if err != nil {
		return err
	}
	defer owner.close()
	defer owner.stop() // handlers that finish after Serve drop their replies
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	st := &serveState{
		owner:    owner,
		sem:      make(chan struct{}, s.opts.MaxConcurrency),
		handlers: handlerCtx,
	}
	stopWaking := context.AfterFunc(ctx, owner.wakeUp)
	defer stopWaking()
	s.log.Info().Str("endpoint", s.endpoint).Bool("curve", s.opts.Certificate != nil).Msg("rpc server listening")

	var graceEnd, hardEnd time.Time
	tick := func() (bool, time.Duration) {
		if !st.draining {
			if ctx.Err() == nil {
				return false, 0
			}
			st.draining = true
			graceEnd = time.Now().Add(s.opts.ShutdownGrace)
			hardEnd = graceEnd.Add(2 * time.Second)
			s.log.Info().Int("inflight", st.inflight).Msg("rpc server draining")
		}
		now := time.Now()
		switch {
		case st.inflight == 0:
			return true, 0
		case now.After(hardEnd):
			s.log.Warn().Int("inflight", st.inflight).Msg("rpc server: giving up on calls that ignore cancellation")
			return true, 0
		case now.After(graceEnd):
			cancelHandlers()
		}
		return false, 20 * time.Millisecond
	}
	if err := owner.run(func(frames [][]byte) { s.handleIncoming(st, frames) }, tick); err != nil {
		return fmt.Errorf("rpc receive: %w", err)
	}
	return nil
}

// send sends on the ROUTER; only the owner's goroutine calls it.
func (s *Server) send(frames [][]byte) {
	if err := sendAll(s.router, frames); err != nil {
		s.log.Warn().Err(err).Msg("rpc send")
	}
}

func (s *Server) handleIncoming(st *serveState, frames [][]byte) {
	if len(frames) < 2 {
		s.log.Warn().Int("frames", len(frames)).Msg("rpc: dropping message without a type frame")
		return
	}
	peer := frames[0]
	switch string(frames[1]) {
	case FramePing:
		pong := append([][]byte{peer, []byte(FramePong)}, frames[2:]...)
		s.send(pong)
		return
	case FrameUpper:
	default:
		s.log.Debug().Int("frames", len(frames)).Msg("rpc: ignoring frame that is neither UPPER nor PING")
		return
	}
	if len(frames) < 3 {
		s.log.Warn().Msg("rpc: dropping UPPER message without a header")
		return
	}
	header, err := DecodeHeader(frames[2])
	if err != nil {
		var herr *HeaderError
		if errors.As(err, &herr) && herr.Addressable {
			s.sendError(peer, herr.Partial, "InvalidHeader", err)
			return
		}
		s.log.Warn().Err(err).Int("bytes", len(frames[2])).Msg("rpc: dropping message with an unreadable header")
		return
	}
	switch {
	case header.Type == TypeCancel:
		// Upstream's CANCEL has no effect either (see spec §2); the call
		// still answers.
		s.log.Debug().Str("method", header.Method).Uint64("seq", header.Seq).Msg("rpc: ignoring CANCEL")
		return
	case header.Type != TypeFunction:
		s.sendError(peer, header, "InvalidMessageType", fmt.Errorf("message type %s is not a request", header.Type))
		return
	case len(frames) != 4:
		s.sendError(peer, header, "InvalidMessage", fmt.Errorf("%d frames, want 4", len(frames)))
		return
	case st.draining:
		s.sendError(peer, header, "ServerShuttingDown", errors.New("the agent is shutting down"))
		return
	case st.inflight >= s.opts.MaxPending:
		s.sendError(peer, header, "ServerBusy", fmt.Errorf("%d calls pending", st.inflight))
		return
	}
	_, payload, err := DecodeBody(frames[3], header.Zip, s.opts.MaxBodySize)
	if err != nil {
		name := "InvalidBody"
		if errors.Is(err, ErrBodyTooLarge) {
			name = "BodyTooLarge"
		}
		s.sendError(peer, header, name, err)
		return
	}
	req := &Request{Peer: peer, Header: header, Payload: payload}
	if s.opts.Inline != nil && s.opts.Inline(header.Method) {
		s.send(replyFrames(peer, header, s.callHandler(st.handlers, req)))
		return
	}
	st.inflight++
	go s.run(st, req)
	st.owner.handOff()
}

// sendError answers with an ERROR message: a failure of the RPC layer.
func (s *Server) sendError(peer []byte, header Header, name string, err error) {
	s.log.Warn().Err(err).Str("method", header.Method).Uint64("seq", header.Seq).Msg("rpc: " + name)
	info := ErrorInfo{Name: name, Repr: fmt.Sprintf("%s(%q)", name, err.Error()), Traceback: err.Error()}
	s.send(replyFrames(peer, header, Reply{Type: TypeError, Error: info}))
}

func replyFrames(peer []byte, req Header, reply Reply) [][]byte {
	meta, payload := MetaEmpty, []byte(nil)
	switch reply.Type {
	case TypeResult:
		payload = nonNil(reply.Payload)
	case TypeFailure, TypeError:
		meta = reply.Error.Encode()
	}
	return [][]byte{peer, []byte(FrameUpper), req.Reply(reply.Type).Encode(), EncodeBody(meta, payload, req.Zip)}
}

func (s *Server) run(st *serveState, req *Request) {
	var reply Reply
	select {
	case st.sem <- struct{}{}:
		reply = s.callHandler(st.handlers, req)
		<-st.sem
	case <-st.handlers.Done():
		reply = Reply{Type: TypeCancelled}
	}
	// inflight is the owner's to count, so it drops when the reply is sent.
	err := st.owner.enqueue(outgoing{frames: replyFrames(req.Peer, req.Header, reply), sent: func(err error) {
		st.inflight--
		if err != nil {
			s.log.Warn().Err(err).Str("method", req.Header.Method).Msg("rpc send")
		}
	}})
	if err != nil {
		s.log.Warn().Str("method", req.Header.Method).Msg("rpc: reply dropped, the server has stopped")
	}
}

// callHandler turns a panic into a FAILURE so one bad call cannot stop the agent.
func (s *Server) callHandler(ctx context.Context, req *Request) (reply Reply) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str("method", req.Header.Method).Interface("panic", r).Msg("rpc handler panicked")
			reply = Reply{Type: TypeFailure, Error: ErrorInfo{
				Name:      "InternalError",
				Repr:      fmt.Sprintf("InternalError(%q)", fmt.Sprint(r)),
				Traceback: string(debug.Stack()),
			}}
		}
	}()
	return s.handler(ctx, req)
}
