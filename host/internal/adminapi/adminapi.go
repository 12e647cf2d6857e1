// Package adminapi is the agent's local admin endpoint: JSON over HTTP on a
// unix socket, used by `baiagent plugins list` to ask the running agent.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/proto/sdk"
)

// SocketName is the socket's file name under agent.ipc-base-path.
const SocketName = "baiagent-admin.sock"

// SocketPath returns the admin socket path for an ipc base path.
func SocketPath(ipcBasePath string) string { return filepath.Join(ipcBasePath, SocketName) }

// PluginSource is what the admin API reads plugin state from.
type PluginSource interface {
	Statuses() []pluginhost.Status
	Devices(name string) ([]sdk.Device, bool)
}

// PluginDetail is one plugin with its devices, for `plugins inspect`.
type PluginDetail struct {
	Status  pluginhost.Status `json:"status"`
	Devices []sdk.Device      `json:"devices"`
}

// Resources is the agent's slots: what it reports to the manager and how
// much of each device is allocated.
type Resources struct {
	Reported map[string]decimal.Decimal `json:"reported"`
	Usage    []alloc.SlotUsage          `json:"usage"`
}

// ResourceSource is what the admin API reads resource use from.
type ResourceSource interface {
	Resources() Resources
}

// Server serves the admin API.
type Server struct {
	http *http.Server
	ln   net.Listener
	path string
}

// Listen binds the socket (replacing a stale one) and serves until Close.
func Listen(path string, plugins PluginSource, res ResourceSource) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create admin socket dir: %w", err)
	}
	if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		_ = conn.Close()
		return nil, fmt.Errorf("admin socket %s is in use: is another agent running?", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/plugins", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, plugins.Statuses())
	})
	mux.HandleFunc("GET /v1/plugins/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		for _, s := range plugins.Statuses() {
			if s.Name == name {
				devs, _ := plugins.Devices(name)
				writeJSON(w, http.StatusOK, PluginDetail{Status: s, Devices: devs})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no plugin named %q", name)})
	})
	mux.HandleFunc("GET /v1/resources", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, res.Resources())
	})
	s := &Server{http: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, path: path}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	_ = os.Remove(s.path)
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrNoAgent means no agent answers on the socket.
var ErrNoAgent = errors.New("no running agent")

// Client asks a running agent.
type Client struct {
	http *http.Client
}

// Dial returns a client for the socket, or ErrNoAgent when nothing listens.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoAgent, path, err)
	}
	_ = conn.Close()
	return &Client{http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}, nil
}

// Close closes the client's idle connection, which the agent would
// otherwise keep serving.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ask agent: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read agent answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("agent answered %s: %s", resp.Status, e.Error)
	}
	return json.Unmarshal(body, out)
}

// Plugins returns the statuses the agent reports.
func (c *Client) Plugins(ctx context.Context) ([]pluginhost.Status, error) {
	var out []pluginhost.Status
	return out, c.get(ctx, "/v1/plugins", &out)
}

// Resources returns the agent's slots and their use.
func (c *Client) Resources(ctx context.Context) (Resources, error) {
	var out Resources
	return out, c.get(ctx, "/v1/resources", &out)
}

// Plugin returns one plugin with its devices.
func (c *Client) Plugin(ctx context.Context, name string) (PluginDetail, error) {
	var out PluginDetail
	return out, c.get(ctx, "/v1/plugins/"+name, &out)
}
