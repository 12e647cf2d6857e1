package rpcserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

type testServer struct {
	srv     *Server
	kernels *MemoryKernels
	errs    chan string
	stop    context.CancelFunc
	done    chan error
}

func startServer(t testing.TB, opts Options, hw HardwareSource) *testServer {
	t.Helper()
	if opts.Endpoint == "" {
		opts.Endpoint = "tcp://127.0.0.1:*"
	}
	if opts.AgentID == "" {
		opts.AgentID = "i-test"
	}
	if opts.PortRangeMin == 0 {
		opts.PortRangeMin, opts.PortRangeMax = 30000, 30001
	}
	opts.Logger = zerolog.Nop()
	ts := &testServer{kernels: NewMemoryKernels(), errs: make(chan string, 100), done: make(chan error, 1)}
	srv, err := New(opts, Deps{Kernels: ts.kernels, Hardware: hw, AgentError: func(_ context.Context, method string, _ error) {
		select {
		case ts.errs <- method:
		default:
		}
	}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	ts.stop = cancel
	go func() { ts.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return")
		}
	})
	return ts
}

// serveUntilCleanup serves srv until the test ends, then checks that Serve
// returned cleanly and runs after (waiting for the methods' background
// work, say).
func serveUntilCleanup(t testing.TB, srv *Server, after ...func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return")
		}
		for _, f := range after {
			f()
		}
	})
}

// runManager takes back what the engine holds for this agent and runs the
// kernel manager's event loop until the test ends.
func runManager(t testing.TB, m *kernel.Manager) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	if _, err := m.Recover(ctx); err != nil {
		stop()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done; m.Close() })
}

func dial(t testing.TB, endpoint string, opts callosum.ClientOptions) *callosum.Client {
	t.Helper()
	c, err := callosum.Dial(context.Background(), endpoint, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fakeHardware []DeviceHealth

func (f fakeHardware) HardwareHealth(context.Context) ([]DeviceHealth, error) { return f, nil }

func TestMethods(t *testing.T) {
	hw := fakeHardware{{DeviceKey: "cuda", Status: "healthy", StatusInfo: "", Metadata: map[string]string{"driver": "550"}}}
	ts := startServer(t, Options{AbuseReportPath: "/var/abuse"}, hw)
	ts.kernels.SetRunning("k1", "s1")
	ts.kernels.SetCreating("k2", true)
	ts.kernels.SetPulling("cr.backend.ai/stable/python:3.11", true)
	c := dial(t, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := ctxTimeout(t)

	cases := []struct {
		description string
		method      string
		args        []any
		kwargs      map[string]any
		want        any
		wantErr     string // FAILURE name, with wantText in repr
		wantText    string
	}{
		{description: "ping echoes", method: "ping", args: []any{"ping"}, want: "ping"},
		{description: "ping with own agent_id", method: "ping", args: []any{"x"}, kwargs: map[string]any{"agent_id": "i-test"}, want: "x"},
		{description: "ping with agent_id None", method: "ping", args: []any{"x"}, kwargs: map[string]any{"agent_id": nil}, want: "x"},
		{description: "unknown agent_id", method: "ping", args: []any{"x"}, kwargs: map[string]any{"agent_id": "i-other"}, wantErr: "AgentIdNotFoundError", wantText: "i-other"},
		{description: "ping without msg", method: "ping", wantErr: "TypeError", wantText: "'msg'"},
		{description: "ping with too many args", method: "ping", args: []any{"a", "b"}, wantErr: "TypeError", wantText: "positional"},
		{description: "ping with unknown kwarg", method: "ping", args: []any{"a"}, kwargs: map[string]any{"bogus": 1}, wantErr: "TypeError", wantText: "'bogus'"},
		{description: "unknown method", method: "no_such_method", wantErr: "UnknownMethodError", wantText: "no_such_method"},
		{description: "check_running known", method: "check_running", args: []any{"k1"}, want: true},
		{description: "check_running unknown", method: "check_running", args: []any{"k9"}, want: false},
		{description: "check_running wrong type", method: "check_running", args: []any{int64(5)}, wantErr: "TypeError", wantText: "'kernel_id'"},
		{description: "check_creating", method: "check_creating", args: []any{"k2"}, want: true},
		{description: "check_pulling", method: "check_pulling", args: []any{"cr.backend.ai/stable/python:3.11"}, want: true},
		{description: "get_local_config positional agent_id", method: "get_local_config", args: []any{"i-test"},
			want: wiremsg.Map{"agent": wiremsg.Map{"abuse-report-path": "/var/abuse"}, "watcher": wiremsg.Map{}}},
		{description: "gather_hwinfo", method: "gather_hwinfo",
			want: wiremsg.Map{"cuda": wiremsg.Map{"status": "healthy", "status_info": "", "metadata": wiremsg.Map{"driver": "550"}}}},
		{description: "gather_hwinfo_v2", method: "gather_hwinfo_v2", kwargs: map[string]any{"req": map[string]any{}},
			want: wiremsg.Map{"devices": []any{wiremsg.Map{"device_name": "cuda", "status": "healthy", "status_info": "", "metadata": wiremsg.Map{"driver": "550"}}}}},
		{description: "assign_port", method: "assign_port", want: int64(30000)},
		{description: "release_port", method: "release_port", args: []any{int64(30000)}, want: nil},
		{description: "release_port wrong type", method: "release_port", args: []any{"30000"}, wantErr: "TypeError", wantText: "'port_no'"},
		{description: "sync_kernel_registry", method: "sync_kernel_registry", args: []any{[]any{[]any{"k1", "s1"}}}, want: nil},
		{description: "sync_kernel_registry bad item", method: "sync_kernel_registry", args: []any{[]any{"k1"}}, wantErr: "TypeError", wantText: "item 0"},
		{description: "scan_gpu_alloc_map", method: "scan_gpu_alloc_map", want: wiremsg.Map{}},
	}
	for _, tc := range cases {
		got, err := c.Invoke(ctx, tc.method, tc.args, tc.kwargs)
		if tc.wantErr != "" {
			var remote *callosum.RemoteError
			if !errors.As(err, &remote) || remote.Type != callosum.TypeFailure || remote.Name != tc.wantErr || !strings.Contains(remote.Repr, tc.wantText) {
				t.Errorf("%s: got %v, %v; want FAILURE %s mentioning %q", tc.description, got, err, tc.wantErr, tc.wantText)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tc.description, got, err, tc.want)
		}
	}

	health, err := c.Invoke(ctx, "health_v2", nil, map[string]any{"req": map[string]any{}})
	if err != nil {
		t.Fatalf("health_v2: %v", err)
	}
	h := health.(wiremsg.Map)
	if h["status"] != "ok" || h["component"] != "agent" || h["connectivity"].(wiremsg.Map)["overall_healthy"] != true {
		t.Errorf("health_v2: %#v", h)
	}
	select {
	case m := <-ts.errs:
		if m == "" {
			t.Error("agent_error hook got an empty method")
		}
	default:
		t.Error("agent_error hook was never called")
	}
}

// The server keeps answering after malformed and hostile messages.
func TestRobustness(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	c := dial(t, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := ctxTimeout(t)
	ping := func(description string) {
		t.Helper()
		got, err := c.Invoke(ctx, "ping", []any{"still-alive"}, nil)
		if err != nil || got != "still-alive" {
			t.Fatalf("ping after %s: %v, %v", description, got, err)
		}
	}
	envelope, _ := callosum.EncodeEnvelope([]any{"x"}, map[string]any{})
	goodBody := callosum.EncodeBody(callosum.MetaFunction, envelope, false)

	cases := []struct {
		description string
		header      func() callosum.Header
		body        []byte
		rawFrames   [][]byte // sent as is; no reply expected
		wantType    callosum.MessageType
		wantName    string
	}{
		{description: "unknown method", header: func() callosum.Header { return c.NextHeader("frobnicate") }, body: goodBody,
			wantType: callosum.TypeFailure, wantName: "UnknownMethodError"},
		{description: "garbage header", rawFrames: [][]byte{[]byte("UPPER"), []byte("\xde\xad\xbe\xef"), goodBody}},
		{description: "missing frames", rawFrames: [][]byte{[]byte("UPPER")}},
		{description: "unknown frame type", rawFrames: [][]byte{[]byte("HELLO"), {}, {}}},
		{description: "truncated body", header: func() callosum.Header { return c.NextHeader("ping") }, body: goodBody[:len(goodBody)-3],
			wantType: callosum.TypeError, wantName: "InvalidBody"},
		{description: "body that is not an envelope", header: func() callosum.Header { return c.NextHeader("ping") },
			body: callosum.EncodeBody(callosum.MetaFunction, []byte("\xc1"), false), wantType: callosum.TypeFailure, wantName: "DecodeError"},
		{description: "bad snappy", header: func() callosum.Header { h := c.NextHeader("ping"); h.Zip = true; return h }, body: goodBody,
			wantType: callosum.TypeError, wantName: "InvalidBody"},
		{description: "100 MiB body", header: func() callosum.Header { return c.NextHeader("ping") },
			body: callosum.EncodeBody(callosum.MetaFunction, make([]byte, 100<<20), false), wantType: callosum.TypeError, wantName: "BodyTooLarge"},
	}
	for _, tc := range cases {
		if tc.rawFrames != nil {
			if err := c.SendFrames(tc.rawFrames...); err != nil {
				t.Fatalf("%s: %v", tc.description, err)
			}
			ping(tc.description)
			continue
		}
		resp, err := c.Exchange(ctx, tc.header(), tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.description, err)
		}
		var remote *callosum.RemoteError
		if err := resp.Err(); !errors.As(err, &remote) || remote.Type != tc.wantType || remote.Name != tc.wantName {
			t.Errorf("%s: got %v, want %s %s", tc.description, err, tc.wantType, tc.wantName)
		}
		ping(tc.description)
	}
}

// A slow handler does not hold up PING or other calls.
func TestSlowHandlerDoesNotBlock(t *testing.T) {
	ts := startServer(t, Options{MaxConcurrency: 2}, nil)
	release := make(chan struct{})
	ts.srv.Register("slow", func(ctx context.Context, _ *Call) (any, error) {
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	defer close(release)
	c := dial(t, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := ctxTimeout(t)
	go func() { _, _ = c.Invoke(ctx, "slow", nil, nil) }()
	start := time.Now()
	if _, err := c.Invoke(ctx, "ping", []any{"p"}, nil); err != nil {
		t.Fatal(err)
	}
	if again := dial(t, ts.srv.Endpoint(), callosum.ClientOptions{HandshakeTimeout: time.Second}); again == nil {
		t.Fatal("handshake failed while a handler is slow")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ping took %v behind a slow handler", d)
	}
}

// At shutdown a call that ignores nothing finishes; one still running after
// the grace period is cancelled and answered CANCELLED.
func TestGracefulShutdown(t *testing.T) {
	ts := startServer(t, Options{ShutdownGrace: 200 * time.Millisecond}, nil)
	entered := make(chan struct{})
	ts.srv.Register("block", func(ctx context.Context, _ *Call) (any, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	c := dial(t, ts.srv.Endpoint(), callosum.ClientOptions{})
	ctx := ctxTimeout(t)
	result := make(chan error, 1)
	go func() { _, err := c.Invoke(ctx, "block", nil, nil); result <- err }()
	<-entered // the call is in flight when the server stops
	ts.stop()
	select {
	case err := <-result:
		if !errors.Is(err, callosum.ErrCancelled) {
			t.Fatalf("in-flight call at shutdown: %v, want CANCELLED", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight call got no reply at shutdown")
	}
}

func writeCert(t *testing.T, dir, name string, cert callosum.Certificate, secret bool) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, callosum.FormatCertificate(cert, secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCurve(t *testing.T) {
	dir := t.TempDir()
	agent, _ := callosum.NewCertificate()
	manager, _ := callosum.NewCertificate()
	stranger, _ := callosum.NewCertificate()
	ts := startServer(t, Options{
		AgentKeypairPath:     writeCert(t, dir, "agent.key_secret", agent, true),
		ManagerPublicKeyPath: writeCert(t, dir, "manager.key", manager, false),
	}, nil)
	if ts.srv.PublicKey() != agent.PublicKey {
		t.Fatalf("PublicKey() = %q, want %q", ts.srv.PublicKey(), agent.PublicKey)
	}
	cases := []struct {
		description string
		client      *callosum.Certificate
		wantServed  bool
	}{
		{"manager's key is served", &manager, true},
		{"another key gets no PONG", &stranger, false},
		{"no CURVE gets no PONG", nil, false},
	}
	for _, tc := range cases {
		opts := callosum.ClientOptions{HandshakeTimeout: time.Second, Certificate: tc.client, ServerPublicKey: agent.PublicKey}
		c, err := callosum.Dial(context.Background(), ts.srv.Endpoint(), opts)
		if !tc.wantServed {
			if !errors.Is(err, callosum.ErrAuthentication) {
				t.Errorf("%s: got %v, want ErrAuthentication", tc.description, err)
			}
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		got, err := c.Invoke(ctxTimeout(t), "ping", []any{"secure"}, nil)
		if err != nil || got != "secure" {
			t.Errorf("%s: ping got %v, %v", tc.description, got, err)
		}
		c.Close()
	}
}
