package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/session"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/host/internal/wiremsg/wiremsgtest"
	"github.com/baiagent/baiagent/proto/sdk"
)

// fakeKernels is a KernelService without containers.
type fakeKernels struct {
	mu        sync.Mutex
	kernels   map[string]kernel.Info
	requests  []kernel.CreateRequest
	destroyed map[string]lifecycle.Reason // kernel id -> reason
	echoed    map[string]bool             // kernel id -> the reason came as the manager's str
	execs     []string
	nextPort  int
	files     map[string][]byte // kernel id + "\x00" + path -> content
}

func newFakeKernels() *fakeKernels {
	return &fakeKernels{kernels: map[string]kernel.Info{}, destroyed: map[string]lifecycle.Reason{}, echoed: map[string]bool{}, nextPort: 30000, files: map[string][]byte{}}
}

func (f *fakeKernels) Create(_ context.Context, req kernel.CreateRequest) (kernel.Created, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	switch {
	case strings.Contains(req.Image, "missing"):
		return kernel.Created{}, fmt.Errorf("create kernel %s: %w: %s", req.KernelID, kernel.ErrImageNotFound, req.Image)
	case req.ResourceSlots["cpu"].GreaterThan(decimal.NewFromInt(64)):
		return kernel.Created{}, fmt.Errorf("create kernel %s: %w", req.KernelID,
			&alloc.ResourceError{Kind: alloc.ErrInsufficientResource, Slot: "cpu", Requested: req.ResourceSlots["cpu"]})
	case req.ResourceSlots["tpu.device"].IsPositive():
		return kernel.Created{}, fmt.Errorf("create kernel %s: %w", req.KernelID, &alloc.ResourceError{Kind: alloc.ErrUnsupportedSlot, Slot: "tpu.device"})
	}
	if _, dup := f.kernels[req.KernelID]; dup {
		return kernel.Created{}, fmt.Errorf("%w: %s", kernel.ErrKernelExists, req.KernelID)
	}
	if _, err := kernel.PreopenServicePorts(req.PreopenPorts); err != nil {
		return kernel.Created{}, fmt.Errorf("create kernel %s: %w", req.KernelID, err)
	}
	sp := []scratch.ServicePort{{Name: "web", Protocol: "http", ContainerPorts: []int{8080}, HostPorts: []int{f.nextPort + 2}}}
	info := kernel.Info{KernelID: req.KernelID, SessionID: req.SessionID, ContainerID: "c-" + req.KernelID, Image: req.Image,
		State: "running", ReplInPort: f.nextPort, ReplOutPort: f.nextPort + 1, ServicePorts: sp,
		Allocation: alloc.Allocation{"cpu": {"cpu": {"0": decimal.NewFromInt(1)}},
			"cuda": {"cuda.shares": {"0": decimal.RequireFromString("0.5")}}}}
	f.nextPort += 3
	f.kernels[req.KernelID] = info
	return kernel.Created{Info: info, ContainerID: info.ContainerID, ServicePorts: sp,
		Attached: map[string][]sdk.AttachedDevice{"cuda": {{DeviceID: "0", ModelName: "Fake GPU", Data: map[string]string{"mem": "1024"}}}}}, nil
}

func (f *fakeKernels) get(kid string) (kernel.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.kernels[kid]
	if !ok {
		return info, fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kid)
	}
	return info, nil
}

func (f *fakeKernels) Destroy(_ context.Context, kid string, reason lifecycle.Reason) (kernel.Termination, error) {
	info, err := f.get(kid)
	if err != nil {
		return kernel.Termination{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.kernels, kid)
	f.destroyed[kid] = reason
	return kernel.Termination{KernelID: kid, SessionID: info.SessionID, Reason: reason}, nil
}

func (f *fakeKernels) DestroyEcho(ctx context.Context, kid string, reason lifecycle.Reason) (kernel.Termination, error) {
	t, err := f.Destroy(ctx, kid, reason)
	if err == nil {
		f.mu.Lock()
		f.echoed[kid] = true
		f.mu.Unlock()
		t.ReasonVerbatim = true
	}
	return t, err
}

func (f *fakeKernels) Execute(_ context.Context, kid, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error) {
	if _, err := f.get(kid); err != nil {
		return runnerclient.Result{}, err
	}
	f.mu.Lock()
	f.execs = append(f.execs, fmt.Sprintf("%s %s %s %v %q", runID, mode, code, opts.FlushTimeout, opts.Batch.Exec))
	f.mu.Unlock()
	zero := 0
	return runnerclient.Result{RunID: runID, Status: runnerclient.StatusFinished, ExitCode: &zero,
		Console: []runnerclient.ConsoleItem{{Type: "stdout", Data: "hi\n"}}}, nil
}

func (f *fakeKernels) Interrupt(_ context.Context, kid string) error {
	_, err := f.get(kid)
	return err
}

func (f *fakeKernels) Complete(_ context.Context, kid string, req protocol.CompletionRequest) ([]string, error) {
	if _, err := f.get(kid); err != nil {
		return nil, err
	}
	return []string{req.Code + "_a", fmt.Sprintf("row%d", req.Options.Row)}, nil
}

func (f *fakeKernels) StartService(_ context.Context, kid string, req protocol.ServiceRequest) (protocol.ServiceResult, error) {
	if _, err := f.get(kid); err != nil {
		return protocol.ServiceResult{}, err
	}
	return protocol.ServiceResult{Status: "started"}, nil
}

func (f *fakeKernels) ShutdownService(_ context.Context, kid, _ string) error {
	_, err := f.get(kid)
	return err
}

func (f *fakeKernels) KernelLogs(_ context.Context, kid string) (string, error) {
	if _, err := f.get(kid); err != nil {
		return "", err
	}
	return "log line\n", nil
}

func (f *fakeKernels) Get(kid string) (kernel.Info, error) { return f.get(kid) }

func (f *fakeKernels) List() []kernel.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]kernel.Info, 0, len(f.kernels))
	for _, info := range f.kernels {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelID < out[j].KernelID })
	return out
}

// kernelBackend is a kernel lifecycle for both the kernel methods and the
// session service: fakeKernels or *kernel.Manager.
type kernelBackend interface {
	session.CallsBackend
	session.Kernels
}

// testKernels are the kernel methods over a backend and a session service
// made over the same backend, as the agent wires them.
type testKernels struct {
	*KernelMethods
	*session.Service
}

func newTestKernels(backend kernelBackend, opts session.Options) *testKernels {
	sessions := session.New(backend, opts)
	return &testKernels{KernelMethods: NewKernelMethods(session.NewCalls(backend), sessions), Service: sessions}
}

// kernelServer serves the kernel methods over svc on a real ZeroMQ socket.
func kernelServer(t testing.TB, svc kernelBackend, ports *portpool.Pool, onAlreadyTerminated func(context.Context, string, string)) (*testKernels, *callosum.Client) {
	t.Helper()
	km := newTestKernels(svc, session.Options{KernelHost: "10.0.0.9", OnAlreadyTerminated: onAlreadyTerminated})
	srv, err := New(Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-test", PortRangeMin: 30000, PortRangeMax: 30010, Logger: zerolog.Nop()},
		Deps{Kernels: km, Ports: ports})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	RegisterKernelMethods(srv, km.KernelMethods)
	serveUntilCleanup(t, srv, km.Wait)
	return km, dial(t, srv.Endpoint(), callosum.ClientOptions{})
}

// invokeRaw sends args encoded as the manager would (ext types included).
func invokeRaw(ctx context.Context, c *callosum.Client, method string, args []any, kwargs kv) (any, error) {
	if kwargs == nil {
		kwargs = kv{}
	}
	payload := mpBytes(obj("args", args, "kwargs", kwargs))
	result, err := c.Call(ctx, method, payload)
	if err != nil {
		return nil, err
	}
	return wiremsg.Unmarshal(result)
}

func wantFailure(t *testing.T, description string, got any, err error, name, text string) {
	t.Helper()
	var remote *callosum.RemoteError
	if !errors.As(err, &remote) || remote.Type != callosum.TypeFailure || remote.Name != name || !strings.Contains(remote.Repr, text) {
		t.Errorf("%s: got %#v, %v; want FAILURE %s mentioning %q", description, got, err, name, text)
	}
}

func uuidOf(t testing.TB, s string) wiremsg.UUID {
	u, err := wiremsg.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func randomUUID() string {
	var u wiremsg.UUID
	for i := range u {
		u[i] = byte(rand.IntN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String()
}

// createArgs builds create_kernels' arguments as AgentClient.create_kernels
// sends them.
func createArgs(t testing.TB, sessionID string, configs map[string]kv, refs map[string]mpExt) []any {
	ids := make([]string, 0, len(configs))
	for id := range configs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var rawIDs, rawConfigs []any
	refMap := kv{}
	for _, id := range ids {
		rawIDs = append(rawIDs, id)
		rawConfigs = append(rawConfigs, configs[id])
		if ref, ok := refs[id]; ok {
			refMap = append(refMap, wiremsg.KV{Key: uuidOf(t, id), Value: ref})
		}
	}
	clusterInfo := obj("mode", goldenExt(t, wiremsg.ExtEnum, goldenClusterModeSingle), "size", len(ids), "replicas", obj("main", len(ids)),
		"network_config", obj(), "ssh_keypair", obj("public_key", "pk", "private_key", "sk"), "cluster_ssh_port_mapping", nil)
	return []any{sessionID, rawIDs, rawConfigs, clusterInfo, refMap}
}

func TestKernelMethodsWithFakeService(t *testing.T) {
	fake := newFakeKernels()
	var termMu sync.Mutex
	var alreadyTerminated []string
	km, c := kernelServer(t, fake, nil, func(_ context.Context, kid, sid string) {
		termMu.Lock()
		alreadyTerminated = append(alreadyTerminated, kid+"/"+sid)
		termMu.Unlock()
	})
	ctx := ctxTimeout(t)
	sid := randomUUID()
	k1, k2 := randomUUID(), randomUUID()
	ref := pickleImageRef("python", "stable", "3.11", "cr.backend.ai", "x86_64", false)

	got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{
		k1: managerConfig(t, k1, sid, "cr.backend.ai/stable/python:3.11"),
		k2: managerConfig(t, k2, sid, "cr.backend.ai/stable/python:3.11").with("preopen_ports", []any{9000}).
			with("internal_data", obj("ssh_keypair", obj("public_key", "user-pk", "private_key", "user-sk"))),
	}, map[string]mpExt{k1: ref, k2: ref}), kv{{Key: "agent_id", Value: "i-test"}})
	if err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	list, ok := got.([]any)
	if !ok || len(list) != 2 {
		t.Fatalf("create_kernels returned %#v", got)
	}
	wantKeys := []string{"agent_addr", "attached_devices", "container_id", "id", "kernel_host", "repl_in_port", "repl_out_port",
		"resource_spec", "scaling_group", "service_ports", "stdin_port", "stdout_port"}
	for i, item := range list {
		m := item.(wiremsg.Map)
		var keys []string
		for k := range m {
			keys = append(keys, k.(string))
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, wantKeys) {
			t.Errorf("result %d keys %v, want %v", i, keys, wantKeys)
		}
		if m["kernel_host"] != "10.0.0.9" || m["agent_addr"] != "tcp://10.0.0.5:6001" || m["scaling_group"] != "default" {
			t.Errorf("result %d: %#v", i, m)
		}
		sp := m["service_ports"].([]any)[0].(wiremsg.Map)
		if sp["name"] != "web" || !reflect.DeepEqual(sp["container_ports"], []any{int64(8080)}) || sp["is_inference"] != false {
			t.Errorf("result %d service port %#v", i, sp)
		}
		dev := m["attached_devices"].(wiremsg.Map)["cuda"].([]any)[0].(wiremsg.Map)
		if dev["device_id"] != "0" || dev["model_name"] != "Fake GPU" {
			t.Errorf("result %d attached devices %#v", i, m["attached_devices"])
		}
		spec := m["resource_spec"].(wiremsg.Map)
		if spec["slots"].(wiremsg.Map)["mem"] != "268435456" || spec["allocations"].(wiremsg.Map)["cpu"].(wiremsg.Map)["cpu"].(wiremsg.Map)["0"] != "1" {
			t.Errorf("result %d resource_spec %#v", i, spec)
		}
	}
	if list[0].(wiremsg.Map)["id"] == list[1].(wiremsg.Map)["id"] {
		t.Error("both results have the same id")
	}
	fake.mu.Lock()
	for _, req := range fake.requests {
		if req.Image != "cr.backend.ai/stable/python:3.11" || req.SessionID != sid || req.Env["GREETING"] != "from-manager" ||
			req.ClusterHostname != "main1" || len(req.Mounts) != 1 || req.Mounts[0] != (scratch.Mount{Source: "/vfroot/data", Target: "/home/work/data"}) ||
			!req.ResourceSlots["cpu"].Equal(decimal.NewFromInt(1)) {
			t.Errorf("create request %+v", req)
		}
		if req.KernelID == k2 && !reflect.DeepEqual(req.PreopenPorts, []int{9000}) {
			t.Errorf("preopen ports %v", req.PreopenPorts)
		}
		// cluster_info.ssh_keypair goes to every kernel, internal_data's to its own.
		if req.ClusterSSHKey == nil || *req.ClusterSSHKey != (scratch.SSHKeypair{PublicKey: "pk", PrivateKey: "sk"}) {
			t.Errorf("%s: cluster ssh key %+v", req.KernelID, req.ClusterSSHKey)
		}
		wantUser := (*scratch.SSHKeypair)(nil)
		if req.KernelID == k2 {
			wantUser = &scratch.SSHKeypair{PublicKey: "user-pk", PrivateKey: "user-sk"}
		}
		if !reflect.DeepEqual(req.UserSSHKey, wantUser) {
			t.Errorf("%s: user ssh key %+v, want %+v", req.KernelID, req.UserSSHKey, wantUser)
		}
	}
	fake.mu.Unlock()

	unknown := randomUUID()
	cases := []struct {
		description string
		method      string
		args        []any
		kwargs      kv
		want        any
		wantErr     string
		wantText    string
	}{
		{description: "check_running", method: "check_running", args: []any{k1}, want: true},
		{description: "check_running hex form", method: "check_running", args: []any{strings.ReplaceAll(k1, "-", "")}, want: true},
		// agent/server.py check_creating: being created or already registered.
		{description: "check_creating of a registered kernel", method: "check_creating", args: []any{k1}, want: true},
		{description: "check_creating unknown", method: "check_creating", args: []any{unknown}, want: false},
		{description: "check_running unknown", method: "check_running", args: []any{unknown}, want: false},
		{description: "execute query", method: "execute", args: []any{sid, k1, 4, "run-1", "query", "echo hi", obj(), 2.5},
			want: wiremsg.Map{"runId": "run-1", "status": "finished", "console": []any{[]any{"stdout", "hi\n"}}, "exitCode": int64(0), "options": nil, "files": []any{}}},
		{description: "execute batch", method: "execute", args: []any{sid, k1, 4, "run-2", "batch", "", obj("exec", "make run"), nil},
			want: wiremsg.Map{"runId": "run-2", "status": "finished", "console": []any{[]any{"stdout", "hi\n"}}, "exitCode": int64(0), "options": nil, "files": []any{}}},
		{description: "execute unknown kernel", method: "execute", args: []any{sid, unknown, 4, "r", "query", "x", obj(), 1.0}, wantErr: "KernelNotFoundError", wantText: unknown},
		{description: "execute a kernel id that is no UUID", method: "execute", args: []any{sid, "k-nope", 4, "r", "query", "x", obj(), 1.0}, wantErr: "KernelNotFoundError", wantText: "k-nope"},
		{description: "execute bad mode", method: "execute", args: []any{sid, k1, 4, "r", "shout", "x", obj(), 1.0}, wantErr: "ValueError", wantText: "'mode'"},
		{description: "execute bad flush_timeout", method: "execute", args: []any{sid, k1, 4, "r", "query", "x", obj(), "soon"}, wantErr: "TypeError", wantText: "'flush_timeout'"},
		{description: "execute bad opts", method: "execute", args: []any{sid, k1, 4, "r", "query", "x", []any{}, 1.0}, wantErr: "TypeError", wantText: "'opts'"},
		{description: "execute bad api_version", method: "execute", args: []any{sid, k1, "4", "r", "query", "x", obj(), 1.0}, wantErr: "TypeError", wantText: "'api_version'"},
		{description: "execute batch opts not strings", method: "execute", args: []any{sid, k1, 4, "r", "batch", "", obj("exec", 5), 1.0}, wantErr: "TypeError", wantText: "'opts'"},
		{description: "execute missing argument", method: "execute", args: []any{sid, k1, 4}, wantErr: "TypeError", wantText: "'run_id'"},
		{description: "interrupt_kernel", method: "interrupt_kernel", args: []any{k1}, want: wiremsg.Map{"status": "finished"}},
		{description: "interrupt_kernel unknown", method: "interrupt_kernel", args: []any{unknown}, wantErr: "KernelNotFoundError", wantText: unknown},
		{description: "interrupt_kernel wrong type", method: "interrupt_kernel", args: []any{5}, wantErr: "TypeError", wantText: "'kernel_id'"},
		{description: "get_completions", method: "get_completions", args: []any{k1, "pri", obj("row", 3, "col", 3, "line", "pri", "post", "")},
			want: wiremsg.Map{"result": wiremsg.Map{"status": "finished", "error": nil, "suggestions": []any{"pri_a", "row3"}}}},
		{description: "get_completions bad text", method: "get_completions", args: []any{k1, 5, obj()}, wantErr: "TypeError", wantText: "'text'"},
		{description: "get_logs", method: "get_logs", args: []any{k1}, want: wiremsg.Map{"logs": "log line\n"}},
		{description: "get_logs unknown", method: "get_logs", args: []any{unknown}, wantErr: "KernelNotFoundError", wantText: unknown},
		{description: "start_service", method: "start_service", args: []any{k1, "web", obj("port", 8080)}, want: wiremsg.Map{"status": "started"}},
		{description: "start_service unknown service", method: "start_service", args: []any{k1, "jupyter", obj()},
			want: wiremsg.Map{"status": "failed", "error": "invalid service name"}},
		{description: "start_service unknown kernel", method: "start_service", args: []any{unknown, "web", obj()}, wantErr: "KernelNotFoundError", wantText: unknown},
		{description: "shutdown_service", method: "shutdown_service", args: []any{k1, "web"}, want: nil},
		{description: "shutdown_service bad service", method: "shutdown_service", args: []any{k1, nil}, wantErr: "TypeError", wantText: "'service'"},
		{description: "scan_gpu_alloc_map sums cuda.shares", method: "scan_gpu_alloc_map", want: wiremsg.Map{"0": "1"}},
		// Upstream answers None for a kernel it does not know (agent/agent.py).
		{description: "destroy_kernel unknown, events suppressed", method: "destroy_kernel", args: []any{unknown, sid, "user-requested"}, kwargs: kv{{Key: "suppress_events", Value: true}}, want: nil},
		{description: "destroy_kernel bad reason", method: "destroy_kernel", args: []any{k1, sid, 5}, wantErr: "TypeError", wantText: "'reason'"},
		{description: "destroy_kernel bad suppress_events", method: "destroy_kernel", args: []any{k1, sid, nil}, kwargs: kv{{Key: "suppress_events", Value: "yes"}}, wantErr: "TypeError", wantText: "'suppress_events'"},
		{description: "create_kernels mismatched lists", method: "create_kernels", args: []any{sid, []any{k1}, []any{}, obj(), obj()}, wantErr: "ValueError", wantText: "'kernel_ids'"},
		{description: "create_kernels bad session id", method: "create_kernels", args: []any{"sess", []any{}, []any{}, obj(), obj()}, wantErr: "ValueError", wantText: "'session_id'"},
		{description: "create_kernels bad kernel id", method: "create_kernels", args: []any{sid, []any{"k"}, []any{obj()}, obj(), obj()}, wantErr: "ValueError", wantText: "'kernel_ids[0]'"},
		{description: "create_kernels configs not a list", method: "create_kernels", args: []any{sid, []any{}, obj(), obj(), obj()}, wantErr: "TypeError", wantText: "'configs'"},
		{description: "create_kernels bad cluster_info", method: "create_kernels", args: []any{sid, []any{}, []any{}, []any{}, obj()}, wantErr: "TypeError", wantText: "cluster_info"},
		{description: "create_kernels bad config", method: "create_kernels", args: []any{sid, []any{unknown}, []any{managerConfig(t, unknown, sid, "x").with("environ", 5)}, obj(), obj()},
			wantErr: "TypeError", wantText: `configs[0][\"environ\"]`},
	}
	for _, tc := range cases {
		got, err := invokeRaw(ctx, c, tc.method, tc.args, tc.kwargs)
		if tc.wantErr != "" {
			wantFailure(t, tc.description, got, err, tc.wantErr, tc.wantText)
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tc.description, got, err, tc.want)
		}
	}
	fake.mu.Lock()
	if len(fake.execs) != 2 || fake.execs[0] != `run-1 query echo hi 2.5s ""` || fake.execs[1] != `run-2 batch  0s "make run"` {
		t.Errorf("executions %q", fake.execs)
	}
	fake.mu.Unlock()

	// Creation failures: FAILURE names as upstream's exceptions.
	for _, tc := range []struct {
		description string
		cfg         kv
		ref         *mpExt
		wantErr     string
		wantText    string
	}{
		{"insufficient resources", managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("resource_slots", obj("cpu", "1000", "mem", "1")),
			nil, "InsufficientResource", "insufficient resource"},
		{"unsupported slot", managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("resource_slots", obj("cpu", "1", "mem", "1", "tpu.device", "1")),
			nil, "UnsupportedResource", "tpu.device"},
		{"missing image with auto_pull none", managerConfig(t, "", sid, "cr.backend.ai/stable/missing:1").with("auto_pull", pickleEnum("AutoPullBehavior", "none")),
			nil, "ImageNotAvailable", "cr.backend.ai/stable/missing:1"},
		{"preopen port of the runner: ReservedPortError", managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("preopen_ports", []any{2001}),
			nil, "ReservedPortError", "2001"},
		{"preopen port of sshd: PortConflictError", managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("preopen_ports", []any{2200}),
			nil, "PortConflictError", "sshd"},
		{"preopen port of ttyd: PortConflictError", managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("preopen_ports", []any{7681}),
			nil, "PortConflictError", "ttyd"},
		{"missing image with auto_pull digest", managerConfig(t, "", sid, "cr.backend.ai/stable/missing:1"),
			nil, "ImagePullFailedError", "cr.backend.ai/stable/missing:1"},
		{"missing image from the ImageRef with auto_pull tag", managerConfig(t, "", sid, "ignored").with("auto_pull", pickleEnum("AutoPullBehavior", "tag")),
			func() *mpExt {
				r := pickleImageRef("missing", "lab", "2", "cr.example.com", "x86_64", false)
				return &r
			}(), "ImagePullFailedError", "cr.example.com/lab/missing:2"},
	} {
		kid := randomUUID()
		refs := map[string]mpExt{}
		if tc.ref != nil {
			refs[kid] = *tc.ref
		}
		got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: tc.cfg}, refs), nil)
		wantFailure(t, tc.description, got, err, tc.wantErr, tc.wantText)
	}
	// Several failures at once: TaskGroupError.
	ka, kb := randomUUID(), randomUUID()
	bad := managerConfig(t, "", sid, "cr.backend.ai/stable/python:3.11").with("resource_slots", obj("cpu", "1000", "mem", "1"))
	got, err = invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{ka: bad, kb: bad}, nil), nil)
	wantFailure(t, "two failures", got, err, "TaskGroupError", "insufficient resource")

	// sync_kernel_registry: k1 stays, k2 is destroyed quietly, a kernel the
	// agent does not know is reported as already terminated.
	ghost := randomUUID()
	if _, err := invokeRaw(ctx, c, "sync_kernel_registry", []any{[]any{[]any{k1, sid}, []any{ghost, sid}}}, nil); err != nil {
		t.Fatalf("sync_kernel_registry: %v", err)
	}
	km.Wait()
	fake.mu.Lock()
	if fake.destroyed[k2] != lifecycle.NotFoundInManager || len(fake.destroyed) != 1 {
		t.Errorf("destroyed %v, want only %s with %s", fake.destroyed, k2, lifecycle.NotFoundInManager)
	}
	fake.mu.Unlock()
	if !km.TakeSuppressed(k2) || km.TakeSuppressed(k2) {
		t.Error("the sync's destroy was not marked suppressed exactly once")
	}
	termMu.Lock()
	if !reflect.DeepEqual(alreadyTerminated, []string{ghost + "/" + sid}) {
		t.Errorf("already-terminated reports %v", alreadyTerminated)
	}
	termMu.Unlock()

	// destroy_kernel of a kernel the agent does not know, events not
	// suppressed: None, and the kernel is reported already terminated
	// (agent/agent.py, the destroy of a kernel missing from the registry).
	gone := randomUUID()
	if got, err := invokeRaw(ctx, c, "destroy_kernel", []any{gone, sid, nil}, nil); err != nil || got != nil {
		t.Fatalf("destroy_kernel of an unknown kernel: %#v, %v; want None", got, err)
	}
	termMu.Lock()
	if !reflect.DeepEqual(alreadyTerminated, []string{ghost + "/" + sid, gone + "/" + sid}) {
		t.Errorf("already-terminated reports %v, want the sync's ghost and %s", alreadyTerminated, gone)
	}
	termMu.Unlock()

	// destroy_kernel with a pickled reason and suppress_events.
	if got, err := invokeRaw(ctx, c, "destroy_kernel", []any{k1, sid, pickleEnum("KernelLifecycleEventReason", "user-requested")},
		kv{{Key: "suppress_events", Value: true}}); err != nil || got != nil {
		t.Fatalf("destroy_kernel: %#v, %v", got, err)
	}
	fake.mu.Lock()
	if fake.destroyed[k1] != "user-requested" || fake.echoed[k1] {
		t.Errorf("destroy reason %q (echoed %v), want the enum's user-requested as the agent's own", fake.destroyed[k1], fake.echoed[k1])
	}
	fake.mu.Unlock()
	if !km.TakeSuppressed(k1) {
		t.Error("suppress_events=True was not recorded")
	}
}

// TestKernelLifecycleOverRPC drives the real kernel manager (real Docker,
// the busybox test image, the static runner, the real cpu plugin) through
// the RPC server and the callosum client, as a manager would.
func TestKernelLifecycleOverRPC(t *testing.T) {
	docker := kerneltest.Docker(t)
	image := kerneltest.BuildBusybox(t, docker)
	runnerPath := kerneltest.RunnerBinary(t)
	plugins, allocator := kerneltest.CPUPlugin(t)
	ports := kerneltest.Ports(t)
	agentID := fmt.Sprintf("rpc-test-agent-%d", rand.Uint64())
	scratchRoot := t.TempDir()
	var termMu sync.Mutex
	var terms []kernel.Termination
	m, err := kernel.New(kernel.Config{
		AgentID: agentID, ScratchRoot: scratchRoot, KernelUID: 1000, KernelGID: 1000, RunnerPath: runnerPath,
		CreationConcurrency: 4, StopTimeout: 2 * time.Second, ReconcileInterval: time.Second,
		OnTerminated: func(term kernel.Termination) {
			termMu.Lock()
			terms = append(terms, term)
			termMu.Unlock()
		},
		Engine: kernel.NewDockerEngine(docker), Allocator: allocator, Plugins: plugins, Ports: ports, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kerneltest.RemoveLabelled(t, docker, kernel.LabelAgentID, agentID)
		if left := kerneltest.ScratchEntries(t, scratchRoot); len(left) > 0 {
			t.Errorf("scratch dirs left behind: %v", left)
		}
	})
	runManager(t, m)

	_, c := kernelServer(t, m, ports, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := allocator.Snapshot()

	sid, kid := randomUUID(), randomUUID()
	// The image as the manager names a local image: project
	// "baiagent-test", name "busybox", tag "latest"; the node knows it by
	// that short name (common/docker.py ImageRef.short), not the registry's.
	ref := pickleImageRef("busybox", "baiagent-test", "latest", "cr.example.com", kernel.NodeArchitecture(), true)
	cfg := managerConfig(t, kid, sid, image).with("mounts", []any{}).with("auto_pull", pickleEnum("AutoPullBehavior", "none"))
	got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, map[string]mpExt{kid: ref}), nil)
	if err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	results, ok := got.([]any)
	if !ok || len(results) != 1 {
		t.Fatalf("create_kernels returned %#v", got)
	}
	res := results[0].(wiremsg.Map)
	in, _ := res["repl_in_port"].(int64)
	out, _ := res["repl_out_port"].(int64)
	if res["id"] != kid || res["container_id"] == "" || in < 20000 || out < 20000 || in == out {
		t.Errorf("create result %#v", res)
	}
	if sp := res["service_ports"].([]any); len(sp) != 2 || sp[0].(wiremsg.Map)["name"] != "sshd" || sp[1].(wiremsg.Map)["name"] != "web" {
		t.Errorf("service ports %#v", res["service_ports"])
	}
	if running, err := invokeRaw(ctx, c, "check_running", []any{kid}, nil); err != nil || running != true {
		t.Errorf("check_running: %v, %v", running, err)
	}

	execRes, err := invokeRaw(ctx, c, "execute", []any{sid, kid, int64(4), "run-1", "query", "echo hi; echo $GREETING", obj(), 10.0}, nil)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	er := execRes.(wiremsg.Map)
	var stdout strings.Builder
	for _, item := range er["console"].([]any) {
		pair := item.([]any)
		if pair[0] == "stdout" {
			stdout.WriteString(pair[1].(string))
		}
	}
	if er["runId"] != "run-1" || er["status"] != "finished" || er["exitCode"] != int64(0) || stdout.String() != "hi\nfrom-manager\n" {
		t.Errorf("execute result %#v (stdout %q)", er, stdout.String())
	}
	if logs, err := invokeRaw(ctx, c, "get_logs", []any{kid}, nil); err != nil {
		t.Errorf("get_logs: %v", err)
	} else if _, ok := logs.(wiremsg.Map)["logs"].(string); !ok {
		t.Errorf("get_logs: %#v", logs)
	}

	// Errors: an unknown kernel, more CPU than the host has, a missing image.
	unknown := randomUUID()
	got, err = invokeRaw(ctx, c, "execute", []any{sid, unknown, int64(4), "r", "query", "echo", obj(), 1.0}, nil)
	wantFailure(t, "execute on an unknown kernel", got, err, "KernelNotFoundError", unknown)
	big := randomUUID()
	got, err = invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{
		big: managerConfig(t, big, sid, image).with("mounts", []any{}).with("resource_slots", obj("cpu", "100000", "mem", "268435456")),
	}, map[string]mpExt{big: ref}), nil)
	wantFailure(t, "insufficient cpu", got, err, "InsufficientResource", "cpu")
	noimg := randomUUID()
	got, err = invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{
		noimg: managerConfig(t, noimg, sid, "baiagent-test/no-such-image:latest").with("mounts", []any{}).with("auto_pull", "none"),
	}, nil), nil)
	wantFailure(t, "missing image", got, err, "ImageNotAvailable", "baiagent-test/no-such-image:latest")

	if got, err := invokeRaw(ctx, c, "destroy_kernel", []any{kid, sid, "user-requested"}, nil); err != nil || got != nil {
		t.Fatalf("destroy_kernel: %#v, %v", got, err)
	}
	if running, err := invokeRaw(ctx, c, "check_running", []any{kid}, nil); err != nil || running != false {
		t.Errorf("check_running after destroy: %v, %v", running, err)
	}
	if got, err := invokeRaw(ctx, c, "destroy_kernel", []any{kid, sid, nil}, nil); err != nil || got != nil {
		t.Errorf("destroy twice: %#v, %v; want None as upstream", got, err)
	}

	if now := allocator.Snapshot(); fmt.Sprintf("%+v", now) != fmt.Sprintf("%+v", before) {
		t.Errorf("allocation not back to where it started:\n got %+v\nwant %+v", now, before)
	}
	if n := ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
	termMu.Lock()
	defer termMu.Unlock()
	if len(terms) != 1 || terms[0].KernelID != kid || terms[0].Reason != "user-requested" {
		t.Errorf("terminations %+v", terms)
	}
}

// hostileMapKey is a msgpack map whose key is a pickled enum holding a
// tuple (ClusterMode(("single-node",))): wiremsg.Unmarshal panics on it,
// the decoded key being unhashable.
func hostileMapKey() []byte {
	out := append([]byte{0x81}, mpBytes(mpExt{Code: wiremsg.ExtEnum, Data: wiremsgtest.TupleValuedEnum()})...)
	return append(out, 0xc0)
}

// A request that makes the decoder panic fails that call only; the server
// keeps answering.
func TestHostileMapKeyOverRPC(t *testing.T) {
	_, c := kernelServer(t, newFakeKernels(), nil, nil)
	ctx := ctxTimeout(t)
	if _, err := unmarshalNoPanic(hostileMapKey()); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Logf("wiremsg no longer panics on the hostile key (%v)", err)
	}
	// {"args": [], "kwargs": <hostile map>}
	payload := append([]byte{0x82}, mpBytes("args")...)
	payload = append(payload, mpBytes([]any{})...)
	payload = append(payload, mpBytes("kwargs")...)
	payload = append(payload, hostileMapKey()...)
	if _, err := c.Call(ctx, "create_kernels", payload); err == nil {
		t.Error("a hostile map key was accepted")
	}
	if got, err := invokeRaw(ctx, c, "ping", []any{"alive"}, nil); err != nil || got != "alive" {
		t.Fatalf("server after a hostile request: %#v, %v", got, err)
	}
}

// TestDestroyKernelReasons pins how destroy_kernel's reason travels
// (agent/server.py destroy_kernel: `reason or USER_REQUESTED`, then the
// kernel_terminated event carries it as it is): a str from the manager's
// terminator (sokovan/scheduler/terminator/terminator.py passes its own
// strings) is echoed verbatim; an enum member or None is the agent's own,
// sent back as the enum.
func TestDestroyKernelReasons(t *testing.T) {
	cases := []struct {
		description  string
		reason       any
		wantReason   lifecycle.Reason
		wantVerbatim bool
	}{
		{"the manager's own string", "ROUTE_TERMINATION", "ROUTE_TERMINATION", true},
		{"a member's value as a str stays a str", "user-requested", "user-requested", true},
		{"a pickled member", pickleEnum("KernelLifecycleEventReason", "idle-timeout"), "idle-timeout", false},
		{"None is user-requested", nil, lifecycle.UserRequested, false},
		{"an empty str is user-requested", "", lifecycle.UserRequested, false},
	}
	fake := newFakeKernels()
	_, c := kernelServer(t, fake, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sid := randomUUID()
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			kid := randomUUID()
			fake.mu.Lock()
			fake.kernels[kid] = kernel.Info{KernelID: kid, SessionID: sid}
			fake.mu.Unlock()
			if got, err := invokeRaw(ctx, c, "destroy_kernel", []any{kid, sid, tc.reason}, nil); err != nil || got != nil {
				t.Fatalf("destroy_kernel: %#v, %v", got, err)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if fake.destroyed[kid] != tc.wantReason || fake.echoed[kid] != tc.wantVerbatim {
				t.Errorf("destroyed with %q (verbatim %v), want %q (verbatim %v)", fake.destroyed[kid], fake.echoed[kid], tc.wantReason, tc.wantVerbatim)
			}
		})
	}
}

// TestStartServiceBlocked pins upstream's DockerKernel.start_service
// (agent/docker/kernel.py): a kernel created with
// internal_data.block_service_ports keeps its ports published, but every
// start_service answers failed with "operation blocked" and nothing is
// started.
func TestStartServiceBlocked(t *testing.T) {
	fake := newFakeKernels()
	_, c := kernelServer(t, fake, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocked, open := randomUUID(), randomUUID()
	fake.mu.Lock()
	jupyter := []scratch.ServicePort{{Name: "jupyter", Protocol: "http", ContainerPorts: []int{8080}, HostPorts: []int{30080}}}
	fake.kernels[blocked] = kernel.Info{KernelID: blocked, SessionID: randomUUID(), ServicePorts: jupyter, BlockServicePorts: true}
	fake.kernels[open] = kernel.Info{KernelID: open, SessionID: randomUUID(), ServicePorts: jupyter}
	fake.mu.Unlock()
	cases := []struct {
		description string
		kernelID    string
		want        wiremsg.Map
	}{
		{"a kernel with blocked service ports", blocked, wiremsg.Map{"status": "failed", "error": "operation blocked"}},
		{"a kernel without", open, wiremsg.Map{"status": "started"}},
	}
	for _, tc := range cases {
		got, err := invokeRaw(ctx, c, "start_service", []any{tc.kernelID, "jupyter", obj("port", 8080)}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.description, err)
		}
		m, _ := got.(wiremsg.Map)
		if m["status"] != tc.want["status"] || m["error"] != tc.want["error"] {
			t.Errorf("%s: start_service answered %#v, want %#v", tc.description, got, tc.want)
		}
	}
}
