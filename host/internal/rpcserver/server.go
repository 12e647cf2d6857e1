// Package rpcserver serves the manager's RPC methods over callosum: the
// method registry, argument binding, error mapping (every handler error is a
// FAILURE [name, repr, traceback]) and the methods that need no containers.
package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Options configure the RPC server; OptionsFromConfig fills them from agent.toml.
type Options struct {
	// Endpoint is the ZeroMQ endpoint, e.g. "tcp://0.0.0.0:6001".
	Endpoint        string
	AgentID         string
	AbuseReportPath string
	Version         string
	PortRangeMin    int
	PortRangeMax    int
	PortCooldown    time.Duration
	// AgentKeypairPath and ManagerPublicKeyPath are certificate files; both
	// set turns on CURVE.
	AgentKeypairPath     string
	ManagerPublicKeyPath string
	MaxBodySize          int
	MaxConcurrency       int
	ShutdownGrace        time.Duration
	Logger               zerolog.Logger
}

// OptionsFromConfig maps agent.toml onto Options. An empty rpc-listen-addr
// host binds all interfaces.
func OptionsFromConfig(cfg *config.Config, version string, logger zerolog.Logger) Options {
	listen := cfg.Agent.RPCListenAddr
	if listen.Host == "" {
		listen.Host = "0.0.0.0"
	}
	return Options{
		Endpoint:             "tcp://" + listen.String(),
		AgentID:              cfg.Agent.ID,
		AbuseReportPath:      cfg.Agent.AbuseReportPath,
		Version:              version,
		PortRangeMin:         cfg.Container.PortRange.Min,
		PortRangeMax:         cfg.Container.PortRange.Max,
		PortCooldown:         cfg.Container.PortReuseCooldown,
		AgentKeypairPath:     cfg.Agent.RPCAuthAgentKeypair,
		ManagerPublicKeyPath: cfg.Agent.RPCAuthManagerPublicKey,
		Logger:               logger,
	}
}

// Deps are the collaborators the handlers use; nil fields get defaults.
type Deps struct {
	// Kernels answers check_pulling, check_creating, check_running,
	// sync_kernel_registry and scan_gpu_alloc_map (the session service);
	// nil leaves those methods out rather than answer from nothing.
	Kernels KernelRegistry
	// Hardware may be nil (no plugin devices to report).
	Hardware HardwareSource
	// Ports defaults to a pool over the configured range.
	Ports *portpool.Pool
	// AgentError is called for every handler error (upstream's @collect_error
	// sends an agent_error event); it may be nil.
	AgentError func(ctx context.Context, method string, err error)
	// Now defaults to time.Now.
	Now func() time.Time
	// Observe is told about every call: method, "result", "failure" or
	// "cancelled", and how long it took (the agent's RPC metrics); it may be nil.
	Observe func(method, result string, took time.Duration)
}

// inlineMethod lists the methods answered on the socket's goroutine: they
// only touch memory, so handing them to a goroutine would cost more than
// running them (the manager pings every agent every 30 s).
func inlineMethod(method string) bool {
	switch method {
	case "ping", "get_local_config", "assign_port", "release_port":
		return true
	}
	return false
}

// Method is one RPC method: it binds its own arguments from call.
type Method func(ctx context.Context, call *Call) (any, error)

// Server is the agent's manager-facing RPC server.
type Server struct {
	opts    Options
	deps    Deps
	methods map[string]Method
	rpc     *callosum.Server
	log     zerolog.Logger
}

// New binds the RPC socket and registers the methods.
func New(opts Options, deps Deps) (*Server, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Ports == nil {
		pool, err := portpool.New(opts.PortRangeMin, opts.PortRangeMax, opts.PortCooldown, deps.Now)
		if err != nil {
			return nil, fmt.Errorf("rpc server: %w", err)
		}
		deps.Ports = pool
	}
	s := &Server{opts: opts, deps: deps, methods: map[string]Method{}, log: opts.Logger}
	s.registerBuiltins()

	serverOpts := callosum.ServerOptions{
		Endpoint:       opts.Endpoint,
		MaxBodySize:    opts.MaxBodySize,
		MaxConcurrency: opts.MaxConcurrency,
		ShutdownGrace:  opts.ShutdownGrace,
		Inline:         inlineMethod,
		Logger:         opts.Logger,
	}
	if (opts.AgentKeypairPath == "") != (opts.ManagerPublicKeyPath == "") {
		return nil, errors.New("rpc server: rpc-auth-agent-keypair and rpc-auth-manager-public-key must be set together")
	}
	if opts.AgentKeypairPath != "" {
		agentCert, err := callosum.LoadCertificate(opts.AgentKeypairPath)
		if err != nil {
			return nil, fmt.Errorf("rpc-auth-agent-keypair: %w", err)
		}
		managerCert, err := callosum.LoadCertificate(opts.ManagerPublicKeyPath)
		if err != nil {
			return nil, fmt.Errorf("rpc-auth-manager-public-key: %w", err)
		}
		serverOpts.Certificate = &agentCert
		serverOpts.ManagerPublicKey = managerCert.PublicKey
	}
	rpc, err := callosum.NewServer(serverOpts, s.handle)
	if err != nil {
		return nil, fmt.Errorf("rpc server: %w", err)
	}
	s.rpc = rpc
	return s, nil
}

// Register adds or replaces a method; call it before Serve (the kernel
// lifecycle registers create_kernels and the rest this way).
func (s *Server) Register(name string, m Method) { s.methods[name] = m }

// Methods lists the registered method names.
func (s *Server) Methods() []string {
	names := make([]string, 0, len(s.methods))
	for n := range s.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Serve answers until ctx ends, then drains (see callosum.Server.Serve).
func (s *Server) Serve(ctx context.Context) error { return s.rpc.Serve(ctx) }

// PublicKey is the agent's z85 CURVE public key for the heartbeat, or "".
func (s *Server) PublicKey() string { return s.rpc.PublicKey() }

// Endpoint is the bound endpoint.
func (s *Server) Endpoint() string { return s.rpc.Endpoint() }

// Ports is the port pool the handlers use, shared with the kernel lifecycle.
func (s *Server) Ports() *portpool.Pool { return s.deps.Ports }

func (s *Server) handle(ctx context.Context, req *callosum.Request) (reply callosum.Reply) {
	if s.deps.Observe != nil {
		start := s.deps.Now()
		method := req.Header.Method
		if _, known := s.methods[method]; !known {
			method = "unknown" // a peer must not create metric labels at will
		}
		defer func() { s.deps.Observe(method, resultLabel(reply.Type), s.deps.Now().Sub(start)) }()
	}
	value, err := s.dispatch(ctx, req)
	if err != nil {
		if s.deps.AgentError != nil {
			s.deps.AgentError(ctx, req.Header.Method, err)
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return callosum.Reply{Type: callosum.TypeCancelled}
		}
		s.log.Warn().Err(err).Str("method", req.Header.Method).Msg("rpc call failed")
		return callosum.Reply{Type: callosum.TypeFailure, Error: failureInfo(req.Header.Method, err)}
	}
	payload, err := wiremsg.Marshal(value)
	if err != nil {
		err = &Error{Name: "SerializationError", Err: fmt.Errorf("encode result of %s: %w", req.Header.Method, err)}
		return callosum.Reply{Type: callosum.TypeFailure, Error: failureInfo(req.Header.Method, err)}
	}
	return callosum.Reply{Type: callosum.TypeResult, Payload: payload}
}

func resultLabel(t callosum.MessageType) string {
	switch t {
	case callosum.TypeResult:
		return "result"
	case callosum.TypeCancelled:
		return "cancelled"
	default:
		return "failure"
	}
}

func (s *Server) dispatch(ctx context.Context, req *callosum.Request) (any, error) {
	method, ok := s.methods[req.Header.Method]
	if !ok {
		return nil, &Error{Name: "UnknownMethodError", Err: fmt.Errorf("unknown RPC method %q", req.Header.Method)}
	}
	call, err := decodeEnvelope(req.Header.Method, req.Payload)
	if err != nil {
		return nil, err
	}
	if id, present := call.Kwargs["agent_id"]; present {
		delete(call.Kwargs, "agent_id")
		if err := s.checkAgentID(id); err != nil {
			return nil, err
		}
	}
	return method(ctx, call)
}

// checkAgentID accepts None (the primary agent) and this agent's own ID.
func (s *Server) checkAgentID(id any) error {
	switch v := id.(type) {
	case nil:
		return nil
	case string:
		if v == s.opts.AgentID {
			return nil
		}
		return &Error{Name: "AgentIdNotFoundError", Err: fmt.Errorf("agent %q is not served here (this is %q)", v, s.opts.AgentID)}
	}
	return typeError("agent_id must be str or None, not %s", wiremsg.PyTypeName(id))
}

// failureInfo builds FAILURE metadata: [class name, repr, traceback-ish text].
func failureInfo(method string, err error) callosum.ErrorInfo {
	name := "AgentError"
	var rpcErr *Error
	if errors.As(err, &rpcErr) {
		name = rpcErr.Name
	}
	message := err.Error()
	if rpcErr != nil {
		message = rpcErr.Err.Error()
	}
	return callosum.ErrorInfo{
		Name:      name,
		Repr:      fmt.Sprintf("%s(%q)", name, message),
		Traceback: fmt.Sprintf("Traceback (baiagent):\n  RPC method %q\n%s: %s\n", method, name, message),
	}
}
