package cli

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// modelServerPy answers every HTTP request with 200 "ok" on the port it is
// given (python3-minimal has no http.server).
const modelServerPy = `import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
`

var inferencePort = regexp.MustCompile(`inference port (\S+): container \[(\d+)\] -> \S+:\[(\d+)\]`)

// runInference starts an inference session with `baiagent kernel run
// --type inference`; it returns the ids and the CLI's stdout.
func (v *managerView) runInference(t *testing.T, image, def string) (kernelID, sessionID, stdout string) {
	t.Helper()
	dir := t.TempDir()
	// The kernel user reads the model folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(modelServerPy), 0o644); err != nil {
		t.Fatal(err)
	}
	defFile := filepath.Join(t.TempDir(), "model-definition.yaml")
	if err := os.WriteFile(defFile, []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, testEnv(t, nil), "kernel", "run", "--type", "inference", "--model-def", defFile, "--model-dir", dir,
		"--addr", "tcp://"+v.rpcAddr, "--image", image, "--cpu", "1", "--mem", "256m")
	m := keptKernel.FindStringSubmatch(stderr)
	if err != nil || m == nil {
		t.Fatalf("kernel run --type inference: %v\n%s\nagent log:\n%s", err, stderr, v.logs.String())
	}
	return m[1], m[2], stdout
}

// TestInferenceSessionAsTheManagerSeesIt serves a model on real Docker with
// the python test image and reads the agent's events back as the 26.8
// manager does: the inference port in create_kernels' reply and answering
// on its host port once the health check passed (agent/agent.py
// _load_model_definition and start_model_service_and_handle_failure,
// kernel/base.py start_model_service and check_model_health); a model
// service that exits at once destroys the kernel as failed-to-start.
func TestInferenceSessionAsTheManagerSeesIt(t *testing.T) {
	docker := kerneltest.Docker(t)
	image := kerneltest.BuildPython(t, docker)
	v := startWithRedis(t)
	v.reader.WaitStream(time.Minute, managertest.Named("agent_started"))

	t.Run("the model service answers on its inference port", func(t *testing.T) {
		kid, sid, out := v.runInference(t, image, `
models:
  - name: echo
    model_path: /models
    service:
      pre_start_actions:
        - action: write_file
          args: {filename: /home/work/prestart.txt, body: ["ran"]}
      start_command: python3 server.py {ports[0]}
      port: 8000
      health_check: {enable: true, path: /health, interval: 0.5, max_retries: 5, max_wait_time: 2, initial_delay: 0}
`)
		m := inferencePort.FindStringSubmatch(out)
		if m == nil || m[1] != "echo-8000" || m[2] != "8000" {
			t.Fatalf("create_kernels' reply has no inference port echo-8000:\n%s", out)
		}
		// kernel_started carries it too.
		v.reader.WaitStream(10*time.Second, func(ev managertest.Event) bool { return ev.Name == "kernel_started" && ev.Str(0) == kid })
		testutil.EventuallyOr(t, 30*time.Second, "the model service's health check to pass", func() bool {
			return strings.Contains(v.logs.String(), "model service started")
		}, func() string { return "agent log:\n" + v.logs.String() })
		resp, err := http.Get("http://127.0.0.1:" + m[3] + "/health")
		if err != nil {
			t.Fatalf("inference port %s: %v", m[3], err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("inference port answered %d %q", resp.StatusCode, body)
		}
		got := v.execute(t, sid, kid, "import os; print(os.environ['BACKEND_MODEL_NAME'], os.environ['BACKEND_MODEL_PATH'], open('/home/work/prestart.txt').read().strip())")
		if !strings.Contains(got, "echo /models ran") {
			t.Errorf("model environment and prestart action: %q", got)
		}
		if _, ok := v.kernels(t)[kid]; !ok {
			t.Fatalf("kernel %s is gone", kid)
		}
		v.invoke(t, "destroy_kernel", kid, sid, nil)
		v.terminated(t, kid)
	})

	t.Run("a model service that exits at once is failed-to-start", func(t *testing.T) {
		kid, _, _ := v.runInference(t, image, `{"models": [{"name": "broken", "model_path": "/models", "service": {"start_command": "exit 3", "port": 8000}}]}`)
		ev := v.terminated(t, kid)
		if ev.Reason(2) != "failed-to-start" || !ev.ReasonIsEnum(2) {
			t.Fatalf("kernel_terminated %+v, want failed-to-start", ev.Args)
		}
	})
}
