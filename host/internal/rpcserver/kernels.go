package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// KernelService is what the single-kernel RPC methods need;
// *session.Calls implements it over the kernel lifecycle.
type KernelService interface {
	KernelFileService
	Interrupt(ctx context.Context, kernelID string) error
	Complete(ctx context.Context, kernelID string, req sessionapi.Completion) (suggestions []string, failure string, err error)
	StartService(ctx context.Context, kernelID, name string, opts map[string]any) (sessionapi.ServiceResult, error)
	ShutdownService(ctx context.Context, kernelID, name string) error
	KernelLogs(ctx context.Context, kernelID string) (string, error)
	List() []sessionapi.KernelSummary
}

// Sessions is what the session-level RPC methods need from the session
// service (*session.Service): kernel creation, destroy, execute, and the
// registry questions of Deps.Kernels.
type Sessions interface {
	KernelRegistry
	CreateKernels(ctx context.Context, req sessionapi.CreateKernels) ([]any, error)
	DestroyKernel(ctx context.Context, d sessionapi.Destroy) error
	Execute(ctx context.Context, e sessionapi.Execution) (map[string]any, error)
}

// KernelMethods decodes the kernel RPC methods' arguments, calls the
// session service or the kernel lifecycle, and encodes the answers.
type KernelMethods struct {
	svc      KernelService
	sessions Sessions
}

// NewKernelMethods serves the kernel methods over a kernel lifecycle and
// a session service.
func NewKernelMethods(svc KernelService, sessions Sessions) *KernelMethods {
	return &KernelMethods{svc: svc, sessions: sessions}
}

// RegisterKernelMethods registers create_kernels, destroy_kernel, execute,
// interrupt_kernel, get_completions, get_logs, start_service and
// shutdown_service, and the file methods upload_file, download_file,
// download_single and list_files on s. Pass the same session service as
// Deps.Kernels to New so that check_creating, check_running,
// sync_kernel_registry and scan_gpu_alloc_map see the same kernels.
func RegisterKernelMethods(s *Server, km *KernelMethods) {
	s.Register("create_kernels", km.createKernels)
	s.Register("destroy_kernel", km.destroyKernel)
	s.Register("execute", km.execute)
	s.Register("interrupt_kernel", km.interruptKernel)
	s.Register("get_completions", km.getCompletions)
	s.Register("get_logs", km.getLogs)
	s.Register("start_service", km.startService)
	s.Register("shutdown_service", km.shutdownService)
	s.Register("upload_file", km.uploadFile)
	s.Register("download_file", km.downloadFile)
	s.Register("download_single", km.downloadSingle)
	s.Register("list_files", km.listFiles)
	s.Register(MethodListKernels, km.listKernels)
}

// MethodListKernels is a baiagent extension, not an upstream method (the
// manager never calls it): baiagent_list_kernels() lists this agent's
// kernels for "baiagent kernel list". It reveals nothing the manager does
// not already know and is served on the same (CURVE-protected) socket.
const MethodListKernels = "baiagent_list_kernels"

// lookupID accepts any string id for methods that only look a kernel up:
// an id that is not a UUID cannot name a kernel, so it fails as unknown.
func (km *KernelMethods) lookupID(method string, v any) (string, error) {
	id, err := uuidValue(argPath(method, "kernel_id"), v)
	if err != nil {
		var rpcErr *Error
		if errors.As(err, &rpcErr) && rpcErr.Name == "ValueError" {
			s, _ := v.(string)
			return "", &Error{Name: "KernelNotFoundError", Err: fmt.Errorf("kernel not found: %s", s)}
		}
		return "", err
	}
	return id, nil
}

// createKernels(session_id, kernel_ids, configs, cluster_info, kernel_image_refs).
func (km *KernelMethods) createKernels(ctx context.Context, call *Call) (any, error) {
	const method = "create_kernels"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_ids"}, param{name: "configs"},
		param{name: "cluster_info"}, param{name: "kernel_image_refs"})
	if err != nil {
		return nil, err
	}
	req := sessionapi.CreateKernels{}
	if req.SessionID, err = uuidValue(argPath(method, "session_id"), args[0]); err != nil {
		return nil, err
	}
	ids, ok := args[1].([]any)
	if !ok {
		return nil, mustBe(argPath(method, "kernel_ids"), "a list", args[1])
	}
	configs, ok := args[2].([]any)
	if !ok {
		return nil, mustBe(argPath(method, "configs"), "a list", args[2])
	}
	if len(ids) != len(configs) {
		return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'kernel_ids' has %d items but 'configs' has %d", method, len(ids), len(configs))}
	}
	if req.Cluster, err = DecodeClusterInfo("cluster_info", args[3]); err != nil {
		return nil, err
	}
	refs, err := DecodeKernelImageRefs("kernel_image_refs", args[4])
	if err != nil {
		return nil, err
	}
	if raw := req.Cluster.NetworkConfig["mode"]; raw != nil {
		if mode, _ := raw.(string); mode == "" {
			return nil, argError("TypeError", `cluster_info["network_config"]["mode"]`, "must be a non-empty str, not %s", wiremsg.PyTypeName(raw))
		}
	}
	if req.Cluster.JSON, err = clusterInfoJSON(req.Cluster); err != nil {
		return nil, err
	}
	req.Kernels = make([]sessionapi.KernelToCreate, len(ids))
	seen := map[string]bool{}
	for i := range ids {
		id, err := uuidValue(argPath(method, fmt.Sprintf("kernel_ids[%d]", i)), ids[i])
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'kernel_ids' lists %s twice", method, id)}
		}
		seen[id] = true
		cfg, err := DecodeKernelCreationConfig(fmt.Sprintf("configs[%d]", i), configs[i])
		if err != nil {
			return nil, err
		}
		image, arch := cfg.Image.Canonical, cfg.Image.Architecture
		if ref, ok := refs[id]; ok {
			// A local image is known on the node by its short name
			// (project/name:tag) and never pulled (agent/docker/agent.py).
			image = ref.Local()
			cfg.Image.IsLocal = ref.IsLocal
			if ref.Architecture != "" {
				arch = ref.Architecture
			}
		}
		if image == "" {
			return nil, &Error{Name: "KeyError", Err: fmt.Errorf("kernel_image_refs: no image for kernel %s (and configs[%d][\"image\"][\"canonical\"] is empty)", id, i)}
		}
		req.Kernels[i] = sessionapi.KernelToCreate{ID: id, Config: cfg, Image: image, Architecture: arch}
	}
	return km.sessions.CreateKernels(ctx, req)
}

// reasonArg reads a termination reason: a str, a KernelLifecycleEventReason
// member, or None (user-requested). verbatim is true for a str, which
// kernel_terminated sends back as it came: the 26.8 manager's terminator
// passes its own strings (ROUTE_TERMINATION, ...), and unpickling them as
// the enum would fail in the manager.
func reasonArg(method string, v any) (reason lifecycle.Reason, verbatim bool, err error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil // user-requested
	case string:
		if x == "" {
			return "", false, nil
		}
		return lifecycle.Reason(x), true, nil
	case wiremsg.Enum:
		reason, err := enumValue(argPath(method, "reason"), x, x.Class)
		return lifecycle.Reason(reason), false, err
	}
	return "", false, mustBe(argPath(method, "reason"), "str or None", v)
}

// destroyKernel(kernel_id, session_id, reason=None, suppress_events=False).
func (km *KernelMethods) destroyKernel(ctx context.Context, call *Call) (any, error) {
	const method = "destroy_kernel"
	args, err := call.bind(param{name: "kernel_id"}, param{name: "session_id"},
		param{name: "reason", optional: true}, param{name: "suppress_events", optional: true})
	if err != nil {
		return nil, err
	}
	kid, err := km.lookupID(method, args[0])
	if err != nil {
		return nil, err
	}
	sid, err := strValue(argPath(method, "session_id"), args[1])
	if err != nil {
		return nil, err
	}
	reason, verbatim, err := reasonArg(method, args[2])
	if err != nil {
		return nil, err
	}
	suppress := false
	switch v := args[3].(type) {
	case nil:
	case bool:
		suppress = v
	default:
		return nil, mustBe(argPath(method, "suppress_events"), "bool", args[3])
	}
	return nil, km.sessions.DestroyKernel(ctx, sessionapi.Destroy{KernelID: kid, SessionID: sid, Reason: reason, Verbatim: verbatim, Suppress: suppress})
}

// execute(session_id, kernel_id, api_version, run_id, mode, code, opts, flush_timeout).
func (km *KernelMethods) execute(ctx context.Context, call *Call) (any, error) {
	const method = "execute"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_id"}, param{name: "api_version"},
		param{name: "run_id"}, param{name: "mode"}, param{name: "code"}, param{name: "opts"}, param{name: "flush_timeout"})
	if err != nil {
		return nil, err
	}
	sessionID, err := strValue(argPath(method, "session_id"), args[0])
	if err != nil {
		return nil, err
	}
	kid, err := km.lookupID(method, args[1])
	if err != nil {
		return nil, err
	}
	if _, err := intValue(argPath(method, "api_version"), args[2]); err != nil {
		return nil, err
	}
	runID := ""
	if args[3] != nil {
		if runID, err = strValue(argPath(method, "run_id"), args[3]); err != nil {
			return nil, err
		}
	}
	mode, err := strValue(argPath(method, "mode"), args[4])
	if err != nil {
		return nil, err
	}
	switch mode {
	case sessionapi.ModeQuery, sessionapi.ModeBatch, sessionapi.ModeInput, sessionapi.ModeContinue:
	default:
		return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'mode' must be query, batch, input or continue, not %q", method, mode)}
	}
	code := ""
	switch c := args[5].(type) {
	case nil:
	case string:
		code = c
	case []byte:
		code = string(c)
	default:
		return nil, mustBe(argPath(method, "code"), "str", args[5])
	}
	opts, err := optionalDict(argPath(method, "opts"), args[6])
	if err != nil {
		return nil, err
	}
	flush, given, err := floatValue(argPath(method, "flush_timeout"), args[7])
	if err != nil {
		return nil, err
	}
	e := sessionapi.Execution{SessionID: sessionID, KernelID: kid, RunID: runID, Mode: mode, Code: code, Options: opts}
	if given {
		if math.IsNaN(flush) || flush < 0 || flush > 24*3600 {
			return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'flush_timeout' %v is out of range", method, flush)}
		}
		e.FlushTimeout = time.Duration(flush * float64(time.Second))
	}
	return km.sessions.Execute(ctx, e)
}

// kernelOnly binds the single kernel_id argument.
func (km *KernelMethods) kernelOnly(method string, call *Call) (string, error) {
	args, err := call.bind(param{name: "kernel_id"})
	if err != nil {
		return "", err
	}
	return km.lookupID(method, args[0])
}

// interruptKernel(kernel_id) -> {"status": "finished"} as upstream's
// kernel.interrupt_kernel.
func (km *KernelMethods) interruptKernel(ctx context.Context, call *Call) (any, error) {
	kid, err := km.kernelOnly("interrupt_kernel", call)
	if err != nil {
		return nil, err
	}
	if err := km.svc.Interrupt(ctx, kid); err != nil {
		return nil, err
	}
	return map[string]any{"status": "finished"}, nil
}

func optInt(opts map[string]any, key string) int {
	switch v := opts[key].(type) {
	case int64:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return int(v)
		}
	case float64:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return int(v)
		}
	}
	return 0
}

// kernelStringOpts binds (kernel_id, <name>: str, opts: dict), the shape of
// get_completions and start_service.
func (km *KernelMethods) kernelStringOpts(method, name string, call *Call) (kid, value string, opts map[string]any, err error) {
	args, err := call.bind(param{name: "kernel_id"}, param{name: name}, param{name: "opts"})
	if err != nil {
		return "", "", nil, err
	}
	if kid, err = km.lookupID(method, args[0]); err != nil {
		return "", "", nil, err
	}
	if value, err = strValue(argPath(method, name), args[1]); err != nil {
		return "", "", nil, err
	}
	if opts, err = optionalDict(argPath(method, "opts"), args[2]); err != nil {
		return "", "", nil, err
	}
	return kid, value, opts, nil
}

// getCompletions(kernel_id, text, opts) -> {"result": {status, error,
// suggestions}} (a v2 method: upstream returns CodeCompletionResp.as_dict()).
func (km *KernelMethods) getCompletions(ctx context.Context, call *Call) (any, error) {
	kid, text, opts, err := km.kernelStringOpts("get_completions", "text", call)
	if err != nil {
		return nil, err
	}
	line, _ := opts["line"].(string)
	post, _ := opts["post"].(string)
	suggestions, failure, err := km.svc.Complete(ctx, kid, sessionapi.Completion{Code: text,
		Row: optInt(opts, "row"), Col: optInt(opts, "col"), Line: line, Post: post})
	if err != nil {
		return nil, err
	}
	if failure != "" {
		return map[string]any{"result": map[string]any{"status": "failed", "error": failure, "suggestions": []any{}}}, nil
	}
	list := make([]any, len(suggestions))
	for i, s := range suggestions {
		list[i] = s
	}
	return map[string]any{"result": map[string]any{"status": "finished", "error": nil, "suggestions": list}}, nil
}

// getLogs(kernel_id) -> {"logs": str}.
func (km *KernelMethods) getLogs(ctx context.Context, call *Call) (any, error) {
	kid, err := km.kernelOnly("get_logs", call)
	if err != nil {
		return nil, err
	}
	logs, err := km.svc.KernelLogs(ctx, kid)
	if err != nil {
		return nil, err
	}
	return map[string]any{"logs": logs}, nil
}

// startService(kernel_id, service, opts) -> the runner's answer
// {status, error?}; an unknown service name answers
// {status: failed, error: "invalid service name"} as upstream.
func (km *KernelMethods) startService(ctx context.Context, call *Call) (any, error) {
	kid, service, opts, err := km.kernelStringOpts("start_service", "service", call)
	if err != nil {
		return nil, err
	}
	res, err := km.svc.StartService(ctx, kid, service, wiremsg.ToJSON(opts).(map[string]any))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"status": res.Status}
	if res.Error != "" {
		out["error"] = res.Error
	}
	return out, nil
}

// shutdownService(kernel_id, service) -> None.
func (km *KernelMethods) shutdownService(ctx context.Context, call *Call) (any, error) {
	const method = "shutdown_service"
	args, err := call.bind(param{name: "kernel_id"}, param{name: "service"})
	if err != nil {
		return nil, err
	}
	kid, err := km.lookupID(method, args[0])
	if err != nil {
		return nil, err
	}
	service, err := strValue(argPath(method, "service"), args[1])
	if err != nil {
		return nil, err
	}
	if err := km.svc.ShutdownService(ctx, kid, service); err != nil {
		return nil, err
	}
	return nil, nil
}

// listKernels() -> [{id, session_id, container_id, image, state,
// repl_in_port, repl_out_port, service_ports, created_at}], sorted by id.
func (km *KernelMethods) listKernels(_ context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	infos := km.svc.List()
	out := make([]any, 0, len(infos))
	for _, info := range infos {
		out = append(out, map[string]any{
			"id": info.ID, "session_id": info.SessionID, "container_id": info.ContainerID, "image": info.Image,
			"state": info.State, "repl_in_port": int64(info.ReplInPort), "repl_out_port": int64(info.ReplOutPort),
			"service_ports": sessionapi.ServicePortDicts(info.ServicePorts), "created_at": info.CreatedAt.UTC().Format(time.RFC3339),
		})
	}
	return out, nil
}
