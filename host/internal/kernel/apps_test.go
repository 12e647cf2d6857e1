package kernel_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

const appsImage = "baiagent-test/python-apps:v2"

// appDefs are upstream-shaped service definitions (as in upstream's
// python images' /etc/backend.ai/service-defs; fields per
// src/ai/backend/kernel/service.py, 26.8.1). A small Python HTTP app
// stands in for Jupyter and code-server.
var appDefs = map[string]string{
	// jupyter: the port goes through a write_tempfile prestart and a ref.
	"jupyter": `{"prestart": [{"action": "write_tempfile", "args": {"body": ["{ports[0]}"]}, "ref": "jupyter_cfg"}],
		"command": ["{runtime_path}", "/opt/app.py", "{jupyter_cfg}"],
		"url_template": "http://{host}:{port}/"}`,
	// vscode: a string command run by a shell; default and allowed
	// arguments land after -c's script as $0 $1 ...
	"vscode": `{"command": "echo \"$0 $*\" > /tmp/vscode-args; echo \"PASSWORD=$PASSWORD\" >> /tmp/vscode-args; exec {runtime_path} /opt/app.py {ports[0]}",
		"shell": "/bin/sh", "default_arguments": {"--auth": "none"}, "allowed_arguments": ["--auth"], "allowed_envs": ["PASSWORD"]}`,
	"undefined": `{"command": ["{runtime_path}", "/opt/app.py", "{no_such_variable}"]}`,
}

// appPy answers every HTTP request with 200; its argument is the port or
// a file holding it. (python3-minimal has no http.server.)
const appPy = `import os, socket, sys
arg = sys.argv[1]
port = int(open(arg).read()) if os.path.exists(arg) else int(arg)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(8)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
`

// buildAppsImage layers the service definitions and the service-ports
// label over the debootstrapped python image.
func buildAppsImage(t testing.TB, docker *client.Client) string {
	t.Helper()
	base := kerneltest.BuildPython(t, docker)
	files := map[string]string{"app.py": appPy}
	for name, def := range appDefs {
		files["service-defs/"+name+".json"] = def
	}
	return buildOver(t, docker, appsImage, files, fmt.Sprintf("FROM %s\nCOPY service-defs/ /etc/backend.ai/service-defs/\nCOPY app.py /opt/app.py\n"+
		"LABEL ai.backend.service-ports=\"jupyter:http:8090,vscode:http:8180,undefined:http:8190\"\n", base))
}

// buildOver builds tag from dockerfile with files in its context.
func buildOver(t testing.TB, docker *client.Client, tag string, files map[string]string, dockerfile string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	add("Dockerfile", []byte(dockerfile))
	for name, body := range files {
		add(name, []byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := docker.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			break
		}
		if msg.Error != "" {
			t.Fatalf("build %s: %s", tag, msg.Error)
		}
	}
	return tag
}

// TestAppsFromServiceDefinitions starts apps defined as upstream's images
// define them, in a real container, through the agent's start_service path.
func TestAppsFromServiceDefinitions(t *testing.T) {
	e := newEnv(t)
	image := buildAppsImage(t, e.docker)
	m := e.manager(t)
	start(t, m)
	req := request(e.kid("k-apps"))
	req.Image = image
	req.PreopenPorts = []int{8888}
	created := create(t, m, req)
	hostPort := map[string]int{}
	for _, sp := range created.ServicePorts {
		hostPort[sp.Name] = sp.HostPorts[0]
	}
	if hostPort["8888"] == 0 || hostPort["jupyter"] == 0 {
		t.Fatalf("service ports %+v", created.ServicePorts)
	}
	// get-apps merged into the service ports, the label's protocol kept
	// (upstream's agent/agent.py create_kernel, 26.8.1).
	wantApps := map[string]scratch.ServicePort{
		"jupyter": {Protocol: "http", URLTemplate: "http://{host}:{port}/"},
		"vscode":  {Protocol: "http", AllowedArguments: []string{"--auth"}, AllowedEnvs: []string{"PASSWORD"}},
		"8888":    {Protocol: "preopen"},
		"sshd":    {Protocol: "tcp"},
	}
	for _, sp := range created.ServicePorts {
		want, ok := wantApps[sp.Name]
		if !ok {
			continue
		}
		if sp.Protocol != want.Protocol || sp.URLTemplate != want.URLTemplate ||
			!slices.Equal(sp.AllowedArguments, want.AllowedArguments) || !slices.Equal(sp.AllowedEnvs, want.AllowedEnvs) {
			t.Errorf("service port %s: %+v, want %+v", sp.Name, sp, want)
		}
	}
	if info, err := m.Get(e.kid("k-apps")); err != nil || !reflect.DeepEqual(info.ServicePorts, created.ServicePorts) {
		t.Errorf("the kernel's info keeps other service ports: %+v, %v", info.ServicePorts, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startSvc := func(name string, opts map[string]any) protocol.ServiceResult {
		t.Helper()
		res, err := m.StartService(ctx, e.kid("k-apps"), protocol.ServiceRequest{Name: name, Options: opts})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		return res
	}
	get := func(port int) error {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}

	if res := startSvc("jupyter", nil); res.Status != "started" {
		t.Fatalf("jupyter: %+v", res)
	}
	if err := get(hostPort["jupyter"]); err != nil {
		t.Fatalf("jupyter on host port %d: %v", hostPort["jupyter"], err)
	}
	if res := startSvc("jupyter", nil); res.Status != "running" {
		t.Fatalf("jupyter again: %+v", res)
	}

	// vscode: refused argument and env start nothing.
	if res := startSvc("vscode", map[string]any{"arguments": map[string]any{"--bind-addr": "0.0.0.0"}}); res.Status != "failed" || !strings.Contains(res.Error, "DisallowedArgument") {
		t.Fatalf("disallowed argument: %+v", res)
	}
	if res := startSvc("vscode", map[string]any{"envs": map[string]any{"LD_PRELOAD": "x"}}); res.Status != "failed" || !strings.Contains(res.Error, "DisallowedEnvironment") {
		t.Fatalf("disallowed env: %+v", res)
	}
	if out := stdout(run(t, m, e.kid("k-apps"), "r1", runnerclient.ModeQuery, "import os\nprint(os.path.exists('/tmp/vscode-args'))")); out != "False\n" {
		t.Fatalf("a refused start ran the app: %q", out)
	}
	if res := startSvc("vscode", nil); res.Status != "started" {
		t.Fatalf("vscode: %+v", res)
	}
	if err := get(hostPort["vscode"]); err != nil {
		t.Fatalf("vscode: %v", err)
	}
	if out := stdout(run(t, m, e.kid("k-apps"), "r2", runnerclient.ModeQuery, "print(open('/tmp/vscode-args').read(), end='')")); out != "--auth none\nPASSWORD=\n" {
		t.Fatalf("vscode defaults: %q", out)
	}
	if err := m.ShutdownService(ctx, e.kid("k-apps"), "vscode"); err != nil {
		t.Fatal(err)
	}
	if res := startSvc("vscode", map[string]any{"arguments": map[string]any{"--auth": "password"}, "envs": map[string]any{"PASSWORD": "pw"}}); res.Status != "started" {
		t.Fatalf("vscode with password: %+v", res)
	}
	if out := stdout(run(t, m, e.kid("k-apps"), "r3", runnerclient.ModeQuery, "print(open('/tmp/vscode-args').read(), end='')")); out != "--auth password\nPASSWORD=pw\n" {
		t.Fatalf("vscode with password: %q", out)
	}

	if res := startSvc("undefined", nil); res.Status != "failed" || !strings.Contains(res.Error, "undefined template variable 'no_such_variable'") {
		t.Fatalf("undefined variable: %+v", res)
	}
	if res := startSvc("8888", nil); res.Status != "started" {
		t.Fatalf("preopen: %+v", res)
	}
	apps, err := m.Apps(ctx, e.kid("k-apps"))
	if err != nil || len(apps.Data) != 3 || apps.Data[0].URLTemplate != "http://{host}:{port}/" || apps.Data[1].Name != "undefined" ||
		len(apps.Data[2].AllowedEnvs) != 1 {
		t.Fatalf("apps %+v, %v", apps, err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	if _, err := m.Destroy(dctx, e.kid("k-apps"), ""); err != nil {
		t.Fatal(err)
	}
}

// fakeAppPy stands in for the modules upstream's python runtime starts
// as built-in apps (notebook, tensorboard.main, sftpserver): it writes its
// arguments, where it listens and its working dir to /tmp/<name>-args,
// then answers HTTP like appPy. Jupyter's address comes from the config
// file it is given, as the real one reads it.
const fakeAppPy = `import os, socket, sys
def main(name):
    args = sys.argv[1:]
    host, port, extra = "0.0.0.0", 0, ""
    if "--config" in args:
        class C:
            def __getattr__(self, k):
                v = C()
                object.__setattr__(self, k, v)
                return v
        c = C()
        exec(open(args[args.index("--config") + 1]).read(), {"c": c})
        host, port = c.NotebookApp.ip, c.NotebookApp.port
        extra = " token=%r" % c.NotebookApp.token
    if "--port" in args:
        port = int(args[args.index("--port") + 1])
    if "--host" in args:
        host = args[args.index("--host") + 1]
    with open("/tmp/%s-args" % name, "w") as f:
        f.write("%s listen=%s:%d%s cwd=%s\n" % (" ".join(args), host, port, extra, os.getcwd()))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    while True:
        c, _ = s.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        c.close()
`

// TestBuiltinApps: an image with apps in its service-ports label and no
// service definitions gets upstream's python built-in apps
// (kernel/python/__init__.py start_service, 26.8.1): jupyter with a
// config file (ip 0.0.0.0, the service port, an empty token),
// tensorboard and sftp on the service port; each answers on its host
// port. A name that is neither defined nor built in is unsupported.
func TestBuiltinApps(t *testing.T) {
	e := newEnv(t)
	base := kerneltest.BuildPython(t, e.docker)
	files := map[string]string{
		"fakeapps/fakeapp.py":              fakeAppPy,
		"fakeapps/notebook.py":             "import fakeapp\nfakeapp.main('notebook')\n",
		"fakeapps/tensorboard/__init__.py": "",
		"fakeapps/tensorboard/main.py":     "import fakeapp\nfakeapp.main('tensorboard')\n",
		"fakeapps/sftpserver.py":           "import fakeapp\nfakeapp.main('sftpserver')\n",
	}
	image := buildOver(t, e.docker, "baiagent-test/python-builtin-apps:v1", files, fmt.Sprintf("FROM %s\nCOPY fakeapps/ /opt/fakeapps/\n"+
		"ENV PYTHONPATH=/opt/fakeapps\nLABEL ai.backend.service-ports=\"jupyter:http:8091,tensorboard:http:6006,sftp:tcp:8022,other:http:8093\"\n", base))
	m := e.manager(t)
	start(t, m)
	req := request(e.kid("k-builtin"))
	req.Image = image
	created := create(t, m, req)
	hostPort := map[string]int{}
	for _, sp := range created.ServicePorts {
		hostPort[sp.Name] = sp.HostPorts[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, tc := range []struct{ service, module, want string }{
		{"jupyter", "notebook", "--no-browser --config /tmp/tmp"},
		{"tensorboard", "tensorboard", "--logdir /home/work/logs --host 0.0.0.0 --port 6006 --debugger_port 6064 listen=0.0.0.0:6006 cwd=/home/work"},
		{"sftp", "sftpserver", "--port 8022 listen=0.0.0.0:8022 cwd=/home/work"},
	} {
		res, err := m.StartService(ctx, e.kid("k-builtin"), protocol.ServiceRequest{Name: tc.service})
		if err != nil || res.Status != "started" {
			t.Fatalf("start %s: %+v, %v", tc.service, res, err)
		}
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort[tc.service]))
		if err != nil {
			t.Fatalf("%s on host port %d: %v", tc.service, hostPort[tc.service], err)
		}
		_ = resp.Body.Close()
		out := stdout(run(t, m, e.kid("k-builtin"), fmt.Sprintf("r%d", i), runnerclient.ModeQuery,
			fmt.Sprintf("print(open('/tmp/%s-args').read(), end='')", tc.module)))
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.service, out, tc.want)
		}
		if tc.service == "jupyter" && !strings.Contains(out, ".py listen=0.0.0.0:8091 token='' cwd=/home/work") {
			t.Errorf("jupyter's config: %q", out)
		}
	}
	if res, err := m.StartService(ctx, e.kid("k-builtin"), protocol.ServiceRequest{Name: "other"}); err != nil || res.Status != "failed" ||
		!strings.Contains(res.Error, "unsupported service: other") {
		t.Errorf("other: %+v, %v", res, err)
	}
	if _, err := m.Destroy(ctx, e.kid("k-builtin"), ""); err != nil {
		t.Fatal(err)
	}
}
