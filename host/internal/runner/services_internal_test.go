package runner

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestServicesStart runs service definitions on this host with busybox's
// httpd as the app, through upstream's BaseRunner._start_service flow
// (src/ai/backend/kernel/base.py 869-1006, 26.8.1).
func TestServicesStart(t *testing.T) {
	busybox := testutil.RequireTool(t, "busybox", "apt-get install busybox-static")
	defs := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(defs, name+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// jupyter-style: a prestart writes the port into a temp file, the ref
	// names it in a string command run by a shell.
	write("web", `{"prestart": [{"action": "write_tempfile", "args": {"body": ["{ports[0]}"]}, "ref": "portfile"}],
		"command": "exec {runtime_path} httpd -f -p 127.0.0.1:$(cat {portfile}) -h /", "shell": "/bin/sh"}`)
	write("vscode", `{"command": ["{runtime_path}", "httpd", "-f", "-p"], "allowed_arguments": ["-h"], "default_arguments": {"127.0.0.1:{ports[0]}": null},
		"allowed_envs": ["PASSWORD"]}`)
	write("slow", `{"command": ["{runtime_path}", "sleep", "30"]}`)
	write("undefined", `{"command": ["{runtime_path}", "{nope}"]}`)
	write("broken", `{"command": ["x"], "protocol": "http"}`)
	write("nothing", `{"command": ["x"], "noop": true}`)
	s := newServices(defs, slog.New(slog.DiscardHandler))
	s.runtimePath, s.dir, s.tempDir, s.env = busybox, t.TempDir(), t.TempDir(), []string{"PATH=/usr/bin:/bin", "HOME=/root"}
	s.openTimeout = 5 * time.Second
	t.Cleanup(s.StopAll)
	ctx := context.Background()
	start := func(req protocol.ServiceRequest) protocol.ServiceResult { return s.Start(ctx, req) }
	answers := func(port int) bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}

	webPort := testutil.FreePort(t, "127.0.0.1")
	if res := start(protocol.ServiceRequest{Name: "web", Port: webPort, Ports: []int{webPort}}); res.Status != "started" || !answers(webPort) {
		t.Fatalf("web: %+v", res)
	}
	if res := start(protocol.ServiceRequest{Name: "web", Port: webPort, Ports: []int{webPort}}); res.Status != "running" {
		t.Fatalf("second start: %+v", res)
	}
	if _, ok := s.vars["portfile"].(string); !ok {
		t.Fatalf("ref not stored: %v", s.vars)
	}

	vsPort := testutil.FreePort(t, "127.0.0.1")
	res := start(protocol.ServiceRequest{Name: "vscode", Port: vsPort, Ports: []int{vsPort},
		Options: map[string]any{"arguments": map[string]any{"--bind": "x"}}})
	if res.Status != "failed" || res.Error != "DisallowedArgument('Argument --bind not allowed for service vscode')" || s.running["vscode"] != nil {
		t.Fatalf("disallowed argument: %+v", res)
	}
	res = start(protocol.ServiceRequest{Name: "vscode", Port: vsPort, Ports: []int{vsPort}, Options: map[string]any{"envs": map[string]any{"HOME": "/"}}})
	if res.Status != "failed" || !strings.Contains(res.Error, "DisallowedEnvironment") {
		t.Fatalf("disallowed env: %+v", res)
	}
	res = start(protocol.ServiceRequest{Name: "vscode", Port: vsPort, Ports: []int{vsPort},
		Options: map[string]any{"arguments": map[string]any{"-h": "/"}, "envs": map[string]any{"PASSWORD": "pw"}}})
	if res.Status != "started" || !answers(vsPort) {
		t.Fatalf("vscode: %+v", res)
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(s.running["vscode"].pid) + "/environ")
	if err != nil || !strings.Contains(string(environ), "PASSWORD=pw\x00") || !strings.Contains(string(environ), "HOME=/root\x00") {
		t.Fatalf("vscode environ %q, %v", environ, err)
	}

	if res := start(protocol.ServiceRequest{Name: "undefined", Port: 1}); res.Status != "failed" || !strings.Contains(res.Error, "undefined template variable 'nope'") {
		t.Fatalf("undefined: %+v", res)
	}
	if res := start(protocol.ServiceRequest{Name: "broken", Port: 1}); res.Status != "failed" || !strings.Contains(res.Error, "unexpected keyword argument 'protocol'") {
		t.Fatalf("broken: %+v", res)
	}
	if res := start(protocol.ServiceRequest{Name: "8080", Port: 8080, Protocol: "preopen"}); res.Status != "started" || len(s.running) != 2 {
		t.Fatalf("preopen: %+v, running %v", res, s.running)
	}
	if res := start(protocol.ServiceRequest{Name: "nothing", Port: 1}); res.Status != "started" || len(s.running) != 2 {
		t.Fatalf("noop: %+v", res)
	}
	if res := start(protocol.ServiceRequest{Name: "term", Port: 1, Protocol: "pty"}); res.Status != "failed" || res.Error != "not implemented yet" {
		t.Fatalf("pty: %+v", res)
	}
	if res := start(protocol.ServiceRequest{Name: "nope", Port: 1}); res.Status != "failed" || res.Error != "unsupported service: nope" {
		t.Fatalf("unknown: %+v", res)
	}

	// A port that never opens: failed, and the process is gone.
	s.openTimeout = 300 * time.Millisecond
	began := time.Now()
	if res := start(protocol.ServiceRequest{Name: "slow", Port: testutil.FreePort(t, "127.0.0.1")}); res.Status != "failed" || res.Error != "opening the service port timed out: slow" {
		t.Fatalf("slow: %+v", res)
	}
	if _, ok := s.running["slow"]; ok || time.Since(began) > 5*time.Second {
		t.Fatalf("slow service left running after %s", time.Since(began))
	}

	webProc := s.running["web"]
	if !s.Shutdown(ctx, "web") {
		t.Fatal("shutdown: not running")
	}
	if webProc.alive() || answers(webPort) {
		t.Fatal("web still running after shutdown")
	}
	if res := start(protocol.ServiceRequest{Name: "web", Port: webPort, Ports: []int{webPort}}); res.Status != "started" {
		t.Fatalf("restart: %+v", res)
	}
	apps := s.Apps()
	if len(apps) != 5 || apps[4].Name != "web" || apps[3].Name != "vscode" || apps[3].AllowedEnvs[0] != "PASSWORD" || apps[3].AllowedArguments[0] != "-h" {
		t.Fatalf("apps %+v", apps)
	}
}
