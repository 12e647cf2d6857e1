package rpcserver

import (
	"context"
	"fmt"
	"path"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// KernelOpsService is what the kernel operation methods need;
// *session.Ops implements it over the kernel lifecycle.
type KernelOpsService interface {
	Restart(ctx context.Context, r sessionapi.Restart) (sessionapi.Restarted, error)
	// StartCommit checks the commit and takes the kernel's commit lock;
	// run makes the image.
	StartCommit(c sessionapi.Commit) (run func(ctx context.Context) error, err error)
	CommitStatus(kernelID, subdir string) (string, error)
	CreateLocalNetwork(ctx context.Context, name string) error
	DestroyLocalNetwork(ctx context.Context, name string) error
	Reset(ctx context.Context) error
}

// KernelOpsOptions configure the kernel operation methods.
type KernelOpsOptions struct {
	// Events receives the bgtask_* events of commits; nil drops them.
	Events Emitter
	Logger zerolog.Logger
}

// KernelOps serves restart_kernel, commit, get_commit_status,
// create_local_network, destroy_local_network and reset_agent.
type KernelOps struct {
	svc   KernelOpsService
	opts  KernelOpsOptions
	tasks *backgroundTasks // the commits
}

// NewKernelOps wraps a kernel service.
func NewKernelOps(svc KernelOpsService, opts KernelOpsOptions) *KernelOps {
	return &KernelOps{svc: svc, opts: opts, tasks: newBackgroundTasks(opts.Events, opts.Logger)}
}

// Wait waits for the background commits.
func (o *KernelOps) Wait() { o.tasks.Wait() }

// Close cancels the background commits and waits for them.
func (o *KernelOps) Close() { o.tasks.Close() }

// RegisterKernelOpsMethods registers the kernel operation methods on s.
func RegisterKernelOpsMethods(s *Server, ops *KernelOps) {
	s.Register("restart_kernel", ops.restartKernel)
	s.Register("commit", ops.commit)
	s.Register("get_commit_status", ops.getCommitStatus)
	s.Register("create_local_network", ops.createLocalNetwork)
	s.Register("destroy_local_network", ops.destroyLocalNetwork)
	s.Register("reset_agent", ops.resetAgent)
}

// networkName binds the single network_name argument.
func networkName(method string, call *Call) (string, error) {
	args, err := call.bind(param{name: "network_name"})
	if err != nil {
		return "", err
	}
	return strValue(argPath(method, "network_name"), args[0])
}

// createLocalNetwork(network_name) -> None.
func (o *KernelOps) createLocalNetwork(ctx context.Context, call *Call) (any, error) {
	name, err := networkName("create_local_network", call)
	if err != nil {
		return nil, err
	}
	return nil, o.svc.CreateLocalNetwork(ctx, name)
}

// destroyLocalNetwork(network_name) -> None.
func (o *KernelOps) destroyLocalNetwork(ctx context.Context, call *Call) (any, error) {
	name, err := networkName("destroy_local_network", call)
	if err != nil {
		return nil, err
	}
	return nil, o.svc.DestroyLocalNetwork(ctx, name)
}

// resetAgent() -> None: every kernel destroyed (see kernel.Manager.Reset).
func (o *KernelOps) resetAgent(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	if err := o.svc.Reset(ctx); err != nil {
		return nil, err
	}
	return nil, nil
}

// restartKernel(session_id, kernel_id, kernel_image, updated_config) ->
// {container_id, repl_in_port, repl_out_port, stdin_port, stdout_port,
// service_ports}. The image must be here already: a restart pulls nothing
// (the stored request has no registry credentials).
func (o *KernelOps) restartKernel(ctx context.Context, call *Call) (any, error) {
	const method = "restart_kernel"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_id"}, param{name: "kernel_image"}, param{name: "updated_config"})
	if err != nil {
		return nil, err
	}
	sessionID, kernelID, err := sessionKernelArgs(method, args)
	if err != nil {
		return nil, err
	}
	var image string
	switch ref := args[2].(type) {
	case wiremsg.ImageRef:
		image = ref.Local() // a local image by its short name
	case string:
		image = ref
	case nil:
	default:
		return nil, mustBe(argPath(method, "kernel_image"), "ImageRef", args[2])
	}
	req := sessionapi.Restart{SessionID: sessionID, KernelID: kernelID, Image: image}
	if req.Update, req.Present, err = decodeRestartUpdate("updated_config", args[3]); err != nil {
		return nil, err
	}
	restarted, err := o.svc.Restart(ctx, req)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"container_id":  restarted.ContainerID,
		"repl_in_port":  int64(restarted.ReplInPort),
		"repl_out_port": int64(restarted.ReplOutPort),
		"stdin_port":    int64(0), // legacy
		"stdout_port":   int64(0), // legacy
		"service_ports": sessionapi.ServicePortDicts(restarted.ServicePorts),
	}, nil
}

// decodeRestartUpdate reads restart_kernel's updated_config, a partial
// KernelCreationConfig that session.RestartUpdate merges over the stored
// one; resource_slots is only checked.
func decodeRestartUpdate(path string, v any) (cfg sessionapi.KernelCreationConfig, present func(key string) bool, err error) {
	if v == nil {
		return cfg, nil, nil
	}
	r, err := newFieldReader(path, v)
	if err != nil {
		return cfg, nil, err
	}
	if cfg.Environ, err = r.strMap("environ"); err != nil {
		return cfg, nil, err
	}
	mounts, err := r.list("mounts")
	if err != nil {
		return cfg, nil, err
	}
	for i, item := range mounts {
		m, err := decodeMount(fmt.Sprintf("%s[%d]", r.sub("mounts"), i), item)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Mounts = append(cfg.Mounts, m)
	}
	if cfg.PreopenPorts, err = r.intList("preopen_ports"); err != nil {
		return cfg, nil, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"cluster_role", &cfg.ClusterRole}, {"cluster_hostname", &cfg.ClusterHostname},
		{"owner_user_id", &cfg.OwnerUserID}, {"owner_project_id", &cfg.OwnerProjectID}} {
		if *f.dst, err = r.str(f.key); err != nil {
			return cfg, nil, err
		}
	}
	idx, err := r.int("cluster_idx", 0)
	if err != nil {
		return cfg, nil, err
	}
	cfg.ClusterIdx = int(idx)
	if cfg.InternalData, err = r.anyMap("internal_data"); err != nil {
		return cfg, nil, err
	}
	if slots, ok := r.get("resource_slots"); ok {
		if _, err := resourceSlots(r.sub("resource_slots"), slots); err != nil {
			return cfg, nil, err
		}
	}
	return cfg, func(key string) bool { _, ok := r.get(key); return ok }, nil
}

// commit(kernel_id, subdir, *, canonical=None, filename=None,
// extra_labels=None) -> {bgtask_id, kernel, path}. The commit runs as a
// background task (bgtask_updated, then bgtask_done or bgtask_failed);
// the request is checked and the kernel's commit lock taken before the
// answer, so a bad path or a commit already running fails the call itself
// (upstream lets the second commit pass silently). path is
// subdir/filename relative to image-commit-path, or None.
func (o *KernelOps) commit(ctx context.Context, call *Call) (any, error) {
	const method = "commit"
	if len(call.Args) > 2 {
		return nil, typeError("%s() takes 3 positional arguments but %d were given", method, len(call.Args)+1)
	}
	args, err := call.bind(param{name: "kernel_id"}, param{name: "subdir"}, param{name: "canonical", optional: true},
		param{name: "filename", optional: true}, param{name: "extra_labels", optional: true})
	if err != nil {
		return nil, err
	}
	kernelID, err := uuidValue(argPath(method, "kernel_id"), args[0])
	if err != nil {
		return nil, err
	}
	req := sessionapi.Commit{KernelID: kernelID}
	if req.Subdir, err = strValue(argPath(method, "subdir"), args[1]); err != nil {
		return nil, err
	}
	optional := func(name string, v any) (string, error) {
		if v == nil {
			return "", nil
		}
		return strValue(argPath(method, name), v)
	}
	if req.Canonical, err = optional("canonical", args[2]); err != nil {
		return nil, err
	}
	if req.Filename, err = optional("filename", args[3]); err != nil {
		return nil, err
	}
	if args[4] != nil {
		labels, err := plainMap(argPath(method, "extra_labels"), args[4])
		if err != nil {
			return nil, err
		}
		req.ExtraLabels = make(map[string]string, len(labels))
		for k, v := range labels {
			if req.ExtraLabels[k], err = strValue(argPath(method, "extra_labels")+fmt.Sprintf("[%q]", k), v); err != nil {
				return nil, err
			}
		}
	}
	taskID, err := newTaskID()
	if err != nil {
		return nil, err
	}
	run, err := o.svc.StartCommit(req)
	if err != nil {
		return nil, err
	}
	o.tasks.start(ctx, taskID, "commit of kernel "+kernelID, run)
	task := taskID.String()
	var relPath any
	if req.Filename != "" {
		relPath = path.Join(req.Subdir, req.Filename)
	}
	return map[string]any{"bgtask_id": task, "kernel": kernelID, "path": relPath}, nil
}

// getCommitStatus(kernel_id, subdir) -> {kernel, status: ready|ongoing}.
func (o *KernelOps) getCommitStatus(_ context.Context, call *Call) (any, error) {
	const method = "get_commit_status"
	args, err := call.bind(param{name: "kernel_id"}, param{name: "subdir"})
	if err != nil {
		return nil, err
	}
	kernelID, err := uuidValue(argPath(method, "kernel_id"), args[0])
	if err != nil {
		return nil, err
	}
	subdir, err := strValue(argPath(method, "subdir"), args[1])
	if err != nil {
		return nil, err
	}
	status, err := o.svc.CommitStatus(kernelID, subdir)
	if err != nil {
		return nil, err
	}
	return map[string]any{"kernel": kernelID, "status": status}, nil
}
