// Package watcher is `baiagent watcher`: a small root HTTP service beside
// the agent that reports and controls the agent's systemd unit, resets
// Docker, powers the node off and mounts storage volumes for the manager
// (upstream's ai.backend.agent.watcher, spec §6).
package watcher

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
)

// The etcd keys the watcher reads (global scope).
const (
	TokenKey         = "config/watcher/token"
	FileIOTimeoutKey = "config/watcher/file-io-timeout"
	MountPrefixKey   = "volumes/_mount"
)

const (
	// TokenHeader carries the shared secret on every request.
	TokenHeader = "X-BackendAI-Watcher-Token"
	// DefaultToken is upstream's token when etcd has none.
	DefaultToken = "insecure"
	// DefaultMountPrefix is upstream's mount prefix when etcd has none.
	DefaultMountPrefix = "/mnt"
	// DockerService is restarted by a hard reset.
	DockerService = "docker.service"
	serverHeader  = "BackendAI-AgentWatcher"
	// notLoadedMessage is upstream's answer when systemctl cannot be run.
	notLoadedMessage = "Agent is not loaded with systemctl."
	maxFstabSize     = 1 << 20
)

// Store reads the watcher's keys from etcd's global scope.
type Store interface {
	Get(ctx context.Context, key string) (value string, found bool, err error)
}

// Options configure a Server. Zero durations take the defaults below.
type Options struct {
	// TargetService is the agent's systemd unit ([watcher] target-service).
	TargetService string
	// SoftResetAvailable enables POST /soft-reset.
	SoftResetAvailable bool
	Store              Store
	System             System
	Log                zerolog.Logger
	// TokenTTL is how long the token read from etcd is trusted before it is
	// read again (default 10 s); a failed read keeps the last token.
	TokenTTL time.Duration
	// TokenCacheFile keeps the last token read from etcd (mode 0600), for a
	// watcher that starts while etcd is unreachable: with the agent's
	// embedded etcd that is exactly when the agent is down and needs the
	// watcher to start it. Empty: no cache.
	TokenCacheFile string
	// EtcdTimeout bounds each etcd read (default 3 s).
	EtcdTimeout time.Duration
	// CommandTimeout bounds each systemctl call (default 10 min).
	CommandTimeout time.Duration
	// FileIOTimeout bounds mount and umount when etcd has no
	// config/watcher/file-io-timeout (default 60 s).
	FileIOTimeout time.Duration
	// ShutdownDelay is the pause between answering POST /shutdown and
	// powering off, so the answer gets out (default 1 s, as upstream).
	ShutdownDelay time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Server is the watcher's HTTP API.
type Server struct {
	opts    Options
	log     zerolog.Logger
	handler http.Handler

	tokenMu      sync.Mutex
	token        string
	tokenKnown   bool
	tokenFetched time.Time

	// mountMu serialises mounts, unmounts and fstab edits.
	mountMu sync.Mutex
	// background tracks the delayed power-off.
	background sync.WaitGroup
}

// New builds a server; call RefreshToken (or let the first request do it)
// before serving.
func New(opts Options) *Server {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 10 * time.Second
	}
	if opts.EtcdTimeout == 0 {
		opts.EtcdTimeout = 3 * time.Second
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 10 * time.Minute
	}
	if opts.FileIOTimeout == 0 {
		opts.FileIOTimeout = 60 * time.Second
	}
	if opts.ShutdownDelay == 0 {
		opts.ShutdownDelay = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TargetService == "" {
		opts.TargetService = "backendai-agent.service"
	}
	s := &Server{opts: opts, log: opts.Log.With().Str("component", "watcher").Logger()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleStatus)
	mux.HandleFunc("POST /soft-reset", s.handleSoftReset)
	mux.HandleFunc("POST /hard-reset", s.handleHardReset)
	mux.HandleFunc("POST /shutdown", s.handleShutdown)
	mux.HandleFunc("POST /agent/start", s.handleAgent("start"))
	mux.HandleFunc("POST /agent/stop", s.handleAgent("stop"))
	mux.HandleFunc("POST /agent/restart", s.handleAgent("restart"))
	mux.HandleFunc("GET /fstab", s.handleFstab)
	mux.HandleFunc("GET /mounts", s.handleListMounts)
	mux.HandleFunc("POST /mounts", s.handleMount)
	mux.HandleFunc("DELETE /mounts", s.handleUnmount)
	s.handler = s.authenticate(mux)
	return s
}

// Handler is the API with authentication in front of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Wait blocks until background work (a pending power-off) has finished.
func (s *Server) Wait() { s.background.Wait() }

// RefreshToken reads the token from etcd now; on failure the last token
// stays in force.
func (s *Server) RefreshToken(ctx context.Context) error {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	return s.refreshTokenLocked(ctx)
}

func (s *Server) refreshTokenLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.EtcdTimeout)
	defer cancel()
	s.tokenFetched = s.opts.Now()
	value, found, err := s.opts.Store.Get(ctx, TokenKey)
	if err != nil {
		err = fmt.Errorf("read %s from etcd: %w", TokenKey, err)
		if !s.tokenKnown {
			if cached, cerr := s.readCachedToken(); cerr == nil {
				s.log.Warn().Err(err).Str("file", s.opts.TokenCacheFile).Msg("etcd unreachable: using the watcher token cached at the last successful read")
				s.token, s.tokenKnown = cached, true
			} else if !errors.Is(cerr, fs.ErrNotExist) {
				s.log.Warn().Err(cerr).Msg("cannot read the cached watcher token")
			}
		}
		return err
	}
	if !found {
		value = DefaultToken
	}
	if !s.tokenKnown || value != s.token {
		if value == DefaultToken {
			s.log.Warn().Msgf("etcd has no %s (or it is %q): the watcher accepts the well-known token %q; set a secret one", TokenKey, DefaultToken, DefaultToken)
		} else {
			s.log.Info().Msg("watcher token read from etcd")
		}
	}
	if value != s.token || !s.tokenKnown {
		if err := s.cacheToken(value); err != nil {
			s.log.Warn().Err(err).Msg("cannot cache the watcher token")
		}
	}
	s.token, s.tokenKnown = value, true
	return nil
}

// maxTokenCache bounds what is read back from the cache file.
const maxTokenCache = 4 << 10

func (s *Server) readCachedToken() (string, error) {
	if s.opts.TokenCacheFile == "" {
		return "", fs.ErrNotExist
	}
	f, err := os.Open(s.opts.TokenCacheFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenCache+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.opts.TokenCacheFile, err)
	}
	token := strings.TrimSpace(string(data))
	if len(data) > maxTokenCache || token == "" {
		return "", fmt.Errorf("%s: not a cached token", s.opts.TokenCacheFile)
	}
	return token, nil
}

// cacheToken replaces the cache file, readable by root only.
func (s *Server) cacheToken(token string) error {
	path := s.opts.TokenCacheFile
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(token+"\n"), 0o600)
}

// currentToken returns the token, re-reading it when the cached one is
// older than TokenTTL.
func (s *Server) currentToken(ctx context.Context) (string, bool) {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	if !s.tokenKnown || s.opts.Now().Sub(s.tokenFetched) >= s.opts.TokenTTL {
		if err := s.refreshTokenLocked(ctx); err != nil {
			s.log.Warn().Err(err).Bool("have_previous", s.tokenKnown).Msg("cannot refresh the watcher token")
		}
	}
	return s.token, s.tokenKnown
}

func tokensEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", serverHeader)
		given, present := r.Header[http.CanonicalHeaderKey(TokenHeader)]
		want, known := s.currentToken(r.Context())
		if !known {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{
				"message": "the watcher has not been able to read its token from etcd yet",
			})
			return
		}
		if !present || len(given) != 1 || !tokensEqual(given[0], want) {
			s.log.Info().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("path", r.URL.Path).
				Bool("header_present", present).Msg("request with an invalid watcher token")
			writeJSON(w, http.StatusForbidden, map[string]string{"message": "invalid or missing " + TokenHeader})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

func writeFieldError(w http.ResponseWriter, err error) bool {
	var fe *FieldError
	if errors.As(err, &fe) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": fe.Error(), "field": fe.Field})
		return true
	}
	return false
}

// commandContext detaches a system action from the request: a client that
// hangs up must not kill a half-done reset.
func (s *Server) commandContext(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.commandContext(r, s.opts.CommandTimeout)
	defer cancel()
	out, err := s.opts.System.Systemctl(ctx, "is-active", s.opts.TargetService)
	if errors.Is(err, exec.ErrNotFound) {
		writeJSON(w, http.StatusOK, map[string]string{"message": notLoadedMessage})
		return
	}
	status := strings.TrimSpace(out)
	if status == "" {
		status = "unknown"
	}
	writeJSON(w, http.StatusOK, map[string]string{"agent-status": status, "watcher-status": "active"})
}

// runSystemctl runs each step in order, going on past failures (as
// upstream, which never checks them), and answers with the outcome.
func (s *Server) runSystemctl(w http.ResponseWriter, r *http.Request, action string, steps ...[]string) bool {
	ctx, cancel := s.commandContext(r, s.opts.CommandTimeout)
	defer cancel()
	var failures []string
	notFound := false
	for _, args := range steps {
		_, err := s.opts.System.Systemctl(ctx, args...)
		if err != nil {
			notFound = notFound || errors.Is(err, exec.ErrNotFound)
			failures = append(failures, err.Error())
			s.log.Error().Err(err).Str("action", action).Strs("systemctl", args).Msg("systemctl failed")
		} else {
			s.log.Info().Str("action", action).Strs("systemctl", args).Str("remote", r.RemoteAddr).Msg("systemctl done")
		}
	}
	switch {
	case notFound:
		writeJSON(w, http.StatusOK, map[string]string{"message": notLoadedMessage})
	case len(failures) > 0:
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"result": "error", "message": strings.Join(failures, "; "),
		})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	}
	return len(failures) == 0
}

func (s *Server) handleSoftReset(w http.ResponseWriter, r *http.Request) {
	if !s.opts.SoftResetAvailable {
		// Upstream does not register the route at all, so it answers 404.
		writeJSON(w, http.StatusNotFound, map[string]string{
			"message": "soft reset is disabled: set [watcher] soft-reset-available = true",
		})
		return
	}
	s.runSystemctl(w, r, "soft-reset", []string{"reload", s.opts.TargetService})
}

func (s *Server) handleHardReset(w http.ResponseWriter, r *http.Request) {
	svc := s.opts.TargetService
	s.runSystemctl(w, r, "hard-reset",
		[]string{"stop", svc}, []string{"restart", DockerService}, []string{"start", svc})
}

func (s *Server) handleAgent(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.runSystemctl(w, r, "agent-"+verb, []string{verb, s.opts.TargetService})
	}
}

func (s *Server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	// The node goes down even when stopping the agent fails: shutdown stops
	// it anyway.
	s.runSystemctl(w, r, "shutdown", []string{"stop", s.opts.TargetService})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.log.Warn().Str("remote", r.RemoteAddr).Dur("in", s.opts.ShutdownDelay).Msg("shutting down the agent node")
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		time.Sleep(s.opts.ShutdownDelay)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommandTimeout)
		defer cancel()
		if err := s.opts.System.Shutdown(ctx); err != nil {
			s.log.Error().Err(err).Msg("shutdown -h now failed")
		}
	}()
}

func (s *Server) handleFstab(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("fstab_path")
	if path == "" {
		path = DefaultFstabPath
	}
	if err := ValidateFstabPath("fstab_path", path); err != nil {
		writeFieldError(w, err)
		return
	}
	data, err := s.opts.System.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		writeJSON(w, http.StatusNotFound, map[string]string{"message": fmt.Sprintf("fstab_path: %s does not exist", path), "field": "fstab_path"})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	case len(data) > maxFstabSize:
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("fstab_path: %s is larger than %d bytes", path, maxFstabSize), "field": "fstab_path"})
		return
	}
	writeText(w, http.StatusOK, string(data))
}

// mountSettings reads the mount prefix and the file I/O timeout from etcd.
func (s *Server) mountSettings(ctx context.Context) (prefix string, timeout time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.EtcdTimeout)
	defer cancel()
	prefix, found, err := s.opts.Store.Get(ctx, MountPrefixKey)
	if err != nil {
		return "", 0, fmt.Errorf("read %s from etcd: %w", MountPrefixKey, err)
	}
	if !found || prefix == "" {
		prefix = DefaultMountPrefix
	}
	if !filepath.IsAbs(prefix) {
		return "", 0, fmt.Errorf("etcd %s = %q is not an absolute path", MountPrefixKey, prefix)
	}
	prefix = filepath.Clean(prefix)
	timeout = s.opts.FileIOTimeout
	raw, found, err := s.opts.Store.Get(ctx, FileIOTimeoutKey)
	if err != nil {
		return "", 0, fmt.Errorf("read %s from etcd: %w", FileIOTimeoutKey, err)
	}
	if found {
		if secs, perr := strconv.ParseFloat(strings.TrimSpace(raw), 64); perr == nil && secs > 0 && secs < 1e6 {
			timeout = time.Duration(secs * float64(time.Second))
		} else {
			s.log.Warn().Str("value", raw).Msgf("ignoring etcd %s: not a positive number of seconds", FileIOTimeoutKey)
		}
	}
	return prefix, timeout, nil
}

func (s *Server) handleListMounts(w http.ResponseWriter, r *http.Request) {
	prefix, _, err := s.mountSettings(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": err.Error()})
		return
	}
	data, err := s.opts.System.ProcMounts()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, MountpointsUnder(data, prefix))
}

func (s *Server) handleMount(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeMountRequest(r.Body, true)
	if err != nil {
		writeFieldError(w, err)
		return
	}
	prefix, timeout, err := s.mountSettings(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": err.Error()})
		return
	}
	mountpoint := filepath.Join(prefix, req.Name)
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	created, err := s.opts.System.Mkdir(mountpoint)
	if err != nil {
		s.log.Error().Err(err).Str("mountpoint", mountpoint).Msg("cannot create the mount point")
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("cannot create the mount point %s: %v", mountpoint, err))
		return
	}
	ctx, cancel := s.commandContext(r, timeout)
	defer cancel()
	out, err := s.opts.System.Mount(ctx, req.FSType, req.Options, req.FSLocation, mountpoint)
	if err != nil {
		if created {
			_ = s.opts.System.Rmdir(mountpoint)
		}
		s.log.Error().Err(err).Str("mountpoint", mountpoint).Msg("mount failed")
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info().Str("name", req.Name).Str("fs_type", req.FSType).Str("fs_location", req.FSLocation).
		Str("mountpoint", mountpoint).Str("remote", r.RemoteAddr).Msg("mounted")
	if req.EditFstab {
		entry := FstabEntry{Device: req.FSLocation, Mountpoint: mountpoint, FSType: req.FSType, Options: req.Options}
		if err := s.editFstab(req.FstabPath, func(text string) (string, bool) { return FstabAdd(text, entry) }); err != nil {
			writeText(w, http.StatusInternalServerError, fmt.Sprintf("mounted %s, but could not add it to %s: %v", mountpoint, req.FstabPath, err))
			return
		}
	}
	writeText(w, http.StatusOK, out)
}

func (s *Server) handleUnmount(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeMountRequest(r.Body, false)
	if err != nil {
		writeFieldError(w, err)
		return
	}
	prefix, timeout, err := s.mountSettings(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": err.Error()})
		return
	}
	mountpoint := filepath.Join(prefix, req.Name)
	if filepath.Dir(mountpoint) != prefix {
		// Unreachable with a validated name; kept as upstream's guard.
		writeText(w, http.StatusBadRequest, "Cannot unmount the mount prefix directory itself.")
		return
	}
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	ctx, cancel := s.commandContext(r, timeout)
	defer cancel()
	out, err := s.opts.System.Unmount(ctx, mountpoint)
	if err != nil {
		s.log.Error().Err(err).Str("mountpoint", mountpoint).Msg("umount failed")
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info().Str("name", req.Name).Str("mountpoint", mountpoint).Str("remote", r.RemoteAddr).Msg("unmounted")
	_ = s.opts.System.Rmdir(mountpoint) // only when empty, as upstream
	if req.EditFstab {
		if err := s.editFstab(req.FstabPath, func(text string) (string, bool) { return FstabRemoveByMountpoint(text, mountpoint) }); err != nil {
			writeText(w, http.StatusInternalServerError, fmt.Sprintf("unmounted %s, but could not remove it from %s: %v", mountpoint, req.FstabPath, err))
			return
		}
	}
	writeText(w, http.StatusOK, out)
}

// editFstab rewrites the fstab when edit changes it.
func (s *Server) editFstab(path string, edit func(string) (string, bool)) error {
	data, err := s.opts.System.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data) > maxFstabSize {
		return fmt.Errorf("larger than %d bytes", maxFstabSize)
	}
	text, changed := edit(string(data))
	if !changed {
		return nil
	}
	if err := s.opts.System.WriteFile(path, []byte(text)); err != nil {
		return err
	}
	s.log.Info().Str("fstab", path).Msg("fstab updated")
	return nil
}

// TLSFiles names the certificate and key of an HTTPS watcher.
type TLSFiles struct {
	Cert, Key string
}

// LoadTLS reads the certificate pair for [watcher] ssl-enabled.
func LoadTLS(files TLSFiles) (*tls.Config, error) {
	if files.Cert == "" {
		return nil, errors.New("watcher.ssl-enabled is true but watcher.ssl-cert is not set")
	}
	if files.Key == "" {
		return nil, errors.New("watcher.ssl-enabled is true but watcher.ssl-key (or ssl-privkey) is not set")
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("watcher TLS (ssl-cert %s, ssl-key %s): %w", files.Cert, files.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Serve answers on ln (over TLS when tlsConfig is set) until ctx ends, then
// shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	<-errc
	return err
}
