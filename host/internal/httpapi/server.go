// Package httpapi serves the agent's internal HTTP endpoint (agent.toml's
// agent.internal-addr): /health, /livez and /readyz in upstream's response
// shape, and Prometheus /metrics.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Check reports whether one dependency is usable; a nil error means healthy.
type Check func(ctx context.Context) error

// Options configure the server.
type Options struct {
	// Addr is host:port to listen on (agent.internal-addr).
	Addr    string
	Version string
	// CheckTimeout bounds each readiness check; 0 means 5 s.
	CheckTimeout time.Duration
	// Routes are further handlers by ServeMux pattern ("GET /v1/events").
	Routes map[string]http.Handler
	Log    zerolog.Logger
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS (agent.ssl-enabled
	// with agent.ssl-cert/ssl-key, PEM), as upstream's TCPSite does.
	TLSCertFile, TLSKeyFile string
	// Pprof serves Go's profiles under /debug/pprof/ ([debug] enabled):
	// they show where the agent spends CPU and memory, and its goroutines.
	Pprof bool
}

type namedCheck struct {
	name         string
	serviceGroup string
	check        Check
}

// Server is the running internal HTTP server.
type Server struct {
	opts     Options
	metrics  *Metrics
	listener net.Listener
	http     *http.Server
	// serveDone closes when the serve loop ends; serveErr is its error.
	serveDone chan struct{}
	serveErr  error

	mu     sync.Mutex
	checks []namedCheck
}

// Listen binds opts.Addr and starts serving; a taken port fails here.
func Listen(opts Options, metrics *Metrics) (*Server, error) {
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 5 * time.Second
	}
	if metrics == nil {
		metrics = NewMetrics()
	}
	var tlsConfig *tls.Config
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
		pair, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("internal http: agent.ssl-cert %s / agent.ssl-key %s: %w", opts.TLSCertFile, opts.TLSKeyFile, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	listener, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("internal http: listen on %s: %w", opts.Addr, err)
	}
	if tlsConfig != nil {
		listener = tls.NewListener(listener, tlsConfig)
	}
	s := &Server{opts: opts, metrics: metrics, listener: listener, serveDone: make(chan struct{})}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.serveDone)
		if err := s.http.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
		}
	}()
	opts.Log.Info().Str("addr", listener.Addr().String()).Bool("tls", tlsConfig != nil).Msg("internal http endpoint serving")
	return s, nil
}

// Addr is the bound address (useful when opts.Addr had port 0).
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Metrics returns the collectors /metrics serves.
func (s *Server) Metrics() *Metrics { return s.metrics }

// AddReadinessCheck registers a check that /readyz requires and /health
// reports. serviceGroup is upstream's category (e.g. "etcd", "agent").
func (s *Server) AddReadinessCheck(name, serviceGroup string, check Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, namedCheck{name: name, serviceGroup: serviceGroup, check: check})
}

// Shutdown stops accepting, waits for requests in flight until ctx ends, and
// returns the serve loop's error if it failed. Calling it again is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("internal http: shutdown: %w", err)
	}
	<-s.serveDone
	return s.serveErr
}

// Handler serves the endpoints; exposed for tests and for mounting.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range s.opts.Routes {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /livez", s.handleLivez)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	if s.opts.Pprof {
		// pprof.Index serves the named profiles (goroutine, heap, ...)
		// below its prefix; the others need their own handlers.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Upstream's HealthStatus values.
const (
	statusOK       = "ok"
	statusDegraded = "degraded"
	statusError    = "error"
)

// HealthResponse is upstream's HealthResponse (common/dto/internal/health.py).
type HealthResponse struct {
	Status       string                    `json:"status"`
	Version      string                    `json:"version"`
	Component    string                    `json:"component"`
	Connectivity ConnectivityCheckResponse `json:"connectivity"`
}

// ConnectivityCheckResponse is upstream's type of the same name.
type ConnectivityCheckResponse struct {
	OverallHealthy     bool                          `json:"overall_healthy"`
	ConnectivityChecks []ComponentConnectivityStatus `json:"connectivity_checks"`
	Timestamp          time.Time                     `json:"timestamp"`
}

// ComponentConnectivityStatus is one check's result.
type ComponentConnectivityStatus struct {
	ServiceGroup  string    `json:"service_group"`
	ComponentID   string    `json:"component_id"`
	IsHealthy     bool      `json:"is_healthy"`
	LastCheckedAt time.Time `json:"last_checked_at"`
	ErrorMessage  *string   `json:"error_message"`
}

// runChecks runs every registered check concurrently, each under its own
// timeout, and lists the results in name order.
func (s *Server) runChecks(ctx context.Context) ConnectivityCheckResponse {
	s.mu.Lock()
	checks := append([]namedCheck(nil), s.checks...)
	s.mu.Unlock()
	results := make([]ComponentConnectivityStatus, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			checkCtx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
			defer cancel()
			err := runCheck(checkCtx, c.check)
			result := ComponentConnectivityStatus{
				ServiceGroup: c.serviceGroup, ComponentID: c.name,
				IsHealthy: err == nil, LastCheckedAt: time.Now().UTC(),
			}
			if err != nil {
				msg := err.Error()
				result.ErrorMessage = &msg
			}
			results[i] = result
		})
	}
	wg.Wait()
	sort.SliceStable(results, func(i, j int) bool { return results[i].ComponentID < results[j].ComponentID })
	healthy := true
	for _, r := range results {
		healthy = healthy && r.IsHealthy
	}
	return ConnectivityCheckResponse{OverallHealthy: healthy, ConnectivityChecks: results, Timestamp: time.Now().UTC()}
}

// runCheck turns a check that outlives its timeout or panics into a failure,
// so one stuck dependency cannot hang or crash the probe.
func runCheck(ctx context.Context, check Check) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("check panicked: %v", r)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check did not finish: %w", ctx.Err())
	}
}

// handleHealth is upstream's detail /health: always 200, "degraded" in the
// body when a check fails.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	connectivity := s.runChecks(r.Context())
	status := statusOK
	if !connectivity.OverallHealthy {
		status = statusDegraded
	}
	s.writeJSON(w, http.StatusOK, HealthResponse{Status: status, Version: s.opts.Version, Component: "agent", Connectivity: connectivity})
}

// handleLivez answers 200 whenever the process is serving HTTP: a failing
// dependency is for /readyz, and restarting the agent would not fix it.
func (s *Server) handleLivez(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, HealthResponse{
		Status: statusOK, Version: s.opts.Version, Component: "agent",
		Connectivity: ConnectivityCheckResponse{OverallHealthy: true, ConnectivityChecks: []ComponentConnectivityStatus{}, Timestamp: time.Now().UTC()},
	})
}

// handleReadyz answers 200 only when every readiness check passes, else 503
// with status "error", as upstream's probe endpoints do.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	connectivity := s.runChecks(r.Context())
	status, code := statusOK, http.StatusOK
	if !connectivity.OverallHealthy {
		status, code = statusError, http.StatusServiceUnavailable
	}
	s.writeJSON(w, code, HealthResponse{Status: status, Version: s.opts.Version, Component: "agent", Connectivity: connectivity})
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		s.opts.Log.Debug().Err(err).Msg("internal http: write response")
	}
}
