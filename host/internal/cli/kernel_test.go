package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/session"
)

// cliKernels is a container-free KernelService: code "fail" exits 3,
// "ask" waits for one line of input, anything else is echoed back.
type cliKernels struct {
	mu       sync.Mutex
	kernels  map[string]kernel.Info
	requests []kernel.CreateRequest
	waiting  map[string]bool // run id -> waits for input
}

func (f *cliKernels) Create(_ context.Context, req kernel.CreateRequest) (kernel.Created, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Image == "missing:1" {
		return kernel.Created{}, fmt.Errorf("%w: %s", kernel.ErrImageNotFound, req.Image)
	}
	f.requests = append(f.requests, req)
	info := kernel.Info{KernelID: req.KernelID, SessionID: req.SessionID, ContainerID: "0123456789abcdef", Image: req.Image,
		State: "running", ReplInPort: 30000, ReplOutPort: 30001, CreatedAt: time.Now()}
	f.kernels[req.KernelID] = info
	return kernel.Created{Info: info, ContainerID: info.ContainerID}, nil
}

func (f *cliKernels) Get(kid string) (kernel.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.kernels[kid]
	if !ok {
		return info, fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kid)
	}
	return info, nil
}

func (f *cliKernels) Destroy(_ context.Context, kid string, reason lifecycle.Reason) (kernel.Termination, error) {
	if _, err := f.Get(kid); err != nil {
		return kernel.Termination{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.kernels, kid)
	return kernel.Termination{KernelID: kid, Reason: reason}, nil
}

func (f *cliKernels) DestroyEcho(ctx context.Context, kid string, reason lifecycle.Reason) (kernel.Termination, error) {
	t, err := f.Destroy(ctx, kid, reason)
	t.ReasonVerbatim = true
	return t, err
}

func (f *cliKernels) Execute(_ context.Context, kid, runID, mode, code string, _ runnerclient.ExecOptions) (runnerclient.Result, error) {
	if _, err := f.Get(kid); err != nil {
		return runnerclient.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	exit := 0
	res := runnerclient.Result{RunID: runID, Status: runnerclient.StatusFinished, ExitCode: &exit}
	switch {
	case mode == runnerclient.ModeInput && f.waiting[runID]:
		delete(f.waiting, runID)
		res.Console = []runnerclient.ConsoleItem{{Type: "stdout", Data: "hello " + code + "\n"}}
	case code == "ask":
		f.waiting[runID] = true
		res.Status, res.ExitCode = runnerclient.StatusWaitingInput, nil
	case code == "fail":
		exit = 3
		res.Console = []runnerclient.ConsoleItem{{Type: "stderr", Data: "boom\n"}}
	default:
		res.Console = []runnerclient.ConsoleItem{{Type: "stdout", Data: "ran: " + code + "\n"}}
	}
	return res, nil
}

func (f *cliKernels) Interrupt(context.Context, string) error { return nil }
func (f *cliKernels) Complete(context.Context, string, protocol.CompletionRequest) ([]string, error) {
	return nil, nil
}
func (f *cliKernels) StartService(context.Context, string, protocol.ServiceRequest) (protocol.ServiceResult, error) {
	return protocol.ServiceResult{}, nil
}
func (f *cliKernels) ShutdownService(context.Context, string, string) error { return nil }
func (f *cliKernels) KernelLogs(context.Context, string) (string, error)    { return "", nil }
func (f *cliKernels) List() []kernel.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kernel.Info
	for _, info := range f.kernels {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelID < out[j].KernelID })
	return out
}

func TestKernelCommands(t *testing.T) {
	fake := &cliKernels{kernels: map[string]kernel.Info{}, waiting: map[string]bool{}}
	sessions := session.New(fake, session.Options{})
	defer sessions.Close()
	km := rpcserver.NewKernelMethods(session.NewCalls(fake), sessions)
	srv, err := rpcserver.New(rpcserver.Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-cli", PortRangeMin: 30000, PortRangeMax: 30010, Logger: zerolog.Nop()},
		rpcserver.Deps{Kernels: sessions})
	if err != nil {
		t.Fatal(err)
	}
	rpcserver.RegisterKernelMethods(srv, km)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := srv.Endpoint()

	execute := func(stdin string, args ...string) (string, string, error) {
		root := NewRootCommand(config.Env{})
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(append(args, "--addr", addr))
		err := root.Execute()
		return out.String(), errOut.String(), err
	}

	// run without --keep: created, executed, destroyed.
	out, _, err := execute("", "kernel", "run", "--image", "baiagent-test/busybox:latest", "--cpu", "2", "--mem", "512m", "-e", "A=b", "echo hi")
	if err != nil || out != "ran: echo hi\n" {
		t.Fatalf("kernel run: out %q, err %v", out, err)
	}
	fake.mu.Lock()
	req := fake.requests[0]
	left := len(fake.kernels)
	fake.mu.Unlock()
	if req.Image != "baiagent-test/busybox:latest" || req.ResourceSlots["cpu"].String() != "2" || req.ResourceSlots["mem"].String() != "536870912" ||
		req.Env["A"] != "b" || req.Env["BACKENDAI_KERNEL_ID"] != req.KernelID || left != 0 {
		t.Errorf("create request %+v, %d kernels left", req, left)
	}

	// run --keep, then list, exec (with input), destroy.
	_, errOut, err := execute("", "kernel", "run", "--image", "img:1", "--keep", "true")
	if err != nil || !strings.Contains(errOut, "left running") {
		t.Fatalf("kernel run --keep: %q, %v", errOut, err)
	}
	kid := strings.Fields(errOut)[1]
	if out, _, err = execute("", "kernel", "list"); err != nil || !strings.Contains(out, kid) || !strings.Contains(out, "running") || !strings.Contains(out, "0123456789ab ") {
		t.Errorf("kernel list: %q, %v", out, err)
	}
	if out, _, err = execute("world\n", "kernel", "exec", kid, "ask"); err != nil || out != "hello world\n" {
		t.Errorf("kernel exec with input: %q, %v", out, err)
	}
	_, errOut, err = execute("", "kernel", "exec", kid, "fail")
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 3 || errOut != "boom\n" {
		t.Errorf("kernel exec fail: stderr %q, err %v", errOut, err)
	}
	if out, _, err = execute("", "kernel", "destroy", kid); err != nil || !strings.Contains(out, "destroyed "+kid) {
		t.Errorf("kernel destroy: %q, %v", out, err)
	}

	// destroy_kernel of a kernel the agent does not have answers None, as
	// upstream's (agent/agent.py); the CLI says what happened.
	unknownKernel, unknownSession := "0b9a6f3a-7f41-4a5e-9d1c-6c1d2e3f4a5b", "5d3c2b1a-0f9e-4d8c-b7a6-958473625140"
	if out, _, err = execute("", "kernel", "destroy", unknownKernel, "--session", unknownSession); err != nil ||
		!strings.Contains(out, "not on this agent; the agent reported it as already terminated") {
		t.Errorf("destroy an unknown kernel with --session: %q, %v", out, err)
	}

	for _, tc := range []struct {
		description string
		args        []string
		wantErr     string
	}{
		{"exec on an unknown kernel", []string{"kernel", "exec", "0b9a6f3a-7f41-4a5e-9d1c-6c1d2e3f4a5b", "x"}, "not on this agent"},
		{"run a missing image", []string{"kernel", "run", "--image", "missing:1", "x"}, "ImageNotAvailable"},
		{"run without --image", []string{"kernel", "run", "x"}, "image"},
		{"run with a bad --mem", []string{"kernel", "run", "--image", "i:1", "--mem", "lots", "x"}, "--mem"},
		{"run with a bad --cpu", []string{"kernel", "run", "--image", "i:1", "--cpu", "-1", "x"}, "--cpu"},
		{"run with a bad --env", []string{"kernel", "run", "--image", "i:1", "-e", "novalue", "x"}, "--env"},
	} {
		_, _, err := execute("", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want it to mention %q", tc.description, err, tc.wantErr)
		}
	}
}

// The CLI does not transfer files; the fake refuses like a kernel without them.
func (c *cliKernels) UploadFile(kernelID, _ string, _ []byte) error {
	return fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kernelID)
}
func (c *cliKernels) DownloadFile(kernelID, _ string) ([]byte, error) {
	return nil, fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kernelID)
}
func (c *cliKernels) DownloadSingle(kernelID, _ string) ([]byte, error) {
	return nil, fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kernelID)
}
func (c *cliKernels) ListFiles(kernelID, _ string) (kernel.FileListing, error) {
	return kernel.FileListing{}, fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, kernelID)
}
