package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func startServer(t *testing.T) *Server {
	t.Helper()
	return startServerWithTimeout(t, 200*time.Millisecond)
}

func startServerWithTimeout(t *testing.T, checkTimeout time.Duration) *Server {
	t.Helper()
	s, err := Listen(Options{Addr: "127.0.0.1:0", Version: "1.2.3", CheckTimeout: checkTimeout, Log: zerolog.New(zerolog.NewTestWriter(t))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func get(t *testing.T, s *Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func decodeHealth(t *testing.T, body []byte) HealthResponse {
	t.Helper()
	var h HealthResponse
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return h
}

func TestReadinessFollowsChecks(t *testing.T) {
	s := startServer(t)
	var etcdDown atomic.Bool
	s.AddReadinessCheck("plugins", "agent", func(context.Context) error { return nil })
	s.AddReadinessCheck("etcd", "etcd", func(context.Context) error {
		if etcdDown.Load() {
			return errors.New("etcd unreachable")
		}
		return nil
	})

	code, body := get(t, s, "/readyz")
	h := decodeHealth(t, body)
	if code != http.StatusOK || h.Status != "ok" || !h.Connectivity.OverallHealthy || len(h.Connectivity.ConnectivityChecks) != 2 {
		t.Fatalf("ready: %d %s", code, body)
	}

	etcdDown.Store(true)
	code, body = get(t, s, "/readyz")
	h = decodeHealth(t, body)
	if code != http.StatusServiceUnavailable || h.Status != "error" || h.Connectivity.OverallHealthy {
		t.Fatalf("not ready: %d %s", code, body)
	}
	etcd := h.Connectivity.ConnectivityChecks[0] // sorted by name
	if etcd.ComponentID != "etcd" || etcd.IsHealthy || etcd.ErrorMessage == nil || *etcd.ErrorMessage != "etcd unreachable" {
		t.Errorf("etcd check = %+v", etcd)
	}

	// /health is 200 with "degraded"; /livez stays 200.
	code, body = get(t, s, "/health")
	h = decodeHealth(t, body)
	if code != http.StatusOK || h.Status != "degraded" || h.Component != "agent" || h.Version != "1.2.3" {
		t.Errorf("health: %d %s", code, body)
	}
	if code, body := get(t, s, "/livez"); code != http.StatusOK || decodeHealth(t, body).Status != "ok" {
		t.Errorf("livez: %d %s", code, body)
	}
}

func TestHealthWireShape(t *testing.T) {
	s := startServer(t)
	s.AddReadinessCheck("rpc", "agent", func(context.Context) error { return nil })
	_, body := get(t, s, "/health")
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	connectivity := raw["connectivity"].(map[string]any)
	check := connectivity["connectivity_checks"].([]any)[0].(map[string]any)
	for _, key := range []string{"service_group", "component_id", "is_healthy", "last_checked_at", "error_message"} {
		if _, ok := check[key]; !ok {
			t.Errorf("check lacks %q: %s", key, body)
		}
	}
	for _, key := range []string{"overall_healthy", "timestamp"} {
		if _, ok := connectivity[key]; !ok {
			t.Errorf("connectivity lacks %q: %s", key, body)
		}
	}
	if raw["status"] != "ok" || raw["component"] != "agent" {
		t.Errorf("body = %s", body)
	}
}

func TestStuckOrPanickingCheckFailsReadiness(t *testing.T) {
	s := startServer(t)
	s.AddReadinessCheck("stuck", "agent", func(ctx context.Context) error {
		<-make(chan struct{}) // ignores ctx
		return nil
	})
	s.AddReadinessCheck("panics", "agent", func(context.Context) error { panic("boom") })
	started := time.Now()
	code, body := get(t, s, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("code %d: %s", code, body)
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Errorf("a stuck check held /readyz for %s", took)
	}
	if !strings.Contains(string(body), "check panicked: boom") || !strings.Contains(string(body), "did not finish") {
		t.Errorf("body = %s", body)
	}
}

func TestMetricsExposition(t *testing.T) {
	s := startServer(t)
	m := s.Metrics()
	m.ObserveRPC("create_kernels", "success", 120*time.Millisecond)
	m.ObserveRPC("create_kernels", "failure", time.Millisecond)
	m.SetKernelCounts(map[string]int{"running": 3, "terminating": 1})
	m.SetKernelCounts(map[string]int{"running": 2})
	m.SetSlot("cuda.device", 1, 4)
	m.IncPluginRestart("cuda")
	m.SetPluginState("cuda", "starting")
	m.SetPluginState("cuda", "running")
	m.SetEventQueueDepth(7)

	code, body := get(t, s, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("code %d", code)
	}
	text := string(body)
	for _, line := range []string{
		`baiagent_rpc_requests_total{method="create_kernels",result="success"} 1`,
		`baiagent_rpc_requests_total{method="create_kernels",result="failure"} 1`,
		`baiagent_rpc_duration_seconds_count{method="create_kernels",result="success"} 1`,
		`baiagent_kernels{state="running"} 2`,
		`baiagent_slot_allocated{slot="cuda.device"} 1`,
		`baiagent_slot_capacity{slot="cuda.device"} 4`,
		`baiagent_plugin_restarts_total{plugin="cuda"} 1`,
		`baiagent_plugin_state{plugin="cuda",state="running"} 1`,
		`baiagent_events_queue_depth 7`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	for _, stale := range []string{`state="terminating"`, `state="starting"`} {
		if strings.Contains(text, stale) {
			t.Errorf("/metrics still has %s", stale)
		}
	}
}

func TestTwoServersHaveSeparateRegistries(t *testing.T) {
	a, b := startServer(t), startServer(t)
	a.Metrics().SetEventQueueDepth(5)
	_, body := get(t, b, "/metrics")
	if strings.Contains(string(body), "baiagent_events_queue_depth 5") {
		t.Error("a metric set on one server shows on the other")
	}
}

func TestListenOnTakenPortFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen(Options{Addr: l.Addr().String()}, nil); err == nil {
		t.Fatal("Listen on a taken port succeeded")
	}
}

func TestShutdownWaitsForInflightRequest(t *testing.T) {
	s := startServerWithTimeout(t, 10*time.Second)
	release := make(chan struct{})
	entered := make(chan struct{})
	s.AddReadinessCheck("slow", "agent", func(ctx context.Context) error {
		close(entered)
		<-release
		return nil
	})
	result := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr().String() + "/readyz")
		if err != nil {
			result <- -1
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	<-entered
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if code := <-result; code != http.StatusOK {
		t.Errorf("in-flight request got %d", code)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/livez"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

// The profiles are served only when asked for ([debug] enabled): they tell
// anyone who can reach the endpoint what the agent runs.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := startServer(t)
	if code, _ := get(t, off, "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("pprof without Pprof: status %d, want 404", code)
	}
	on, err := Listen(Options{Addr: "127.0.0.1:0", Pprof: true, Log: zerolog.New(zerolog.NewTestWriter(t))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = on.Shutdown(context.Background()) })
	code, body := get(t, on, "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.HasPrefix(string(body), "goroutine profile: total ") {
		t.Errorf("goroutine profile: status %d, body %.80q", code, body)
	}
}
