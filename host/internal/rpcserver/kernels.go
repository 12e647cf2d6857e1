package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// KernelService is what the kernel RPC methods need from the kernel
// lifecycle; *kernel.Manager implements it.
type KernelService interface {
	KernelFileService
	Create(ctx context.Context, req kernel.CreateRequest) (kernel.Created, error)
	Destroy(ctx context.Context, kernelID string, reason lifecycle.Reason) (kernel.Termination, error)
	DestroyEcho(ctx context.Context, kernelID string, reason lifecycle.Reason) (kernel.Termination, error)
	Execute(ctx context.Context, kernelID, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error)
	Interrupt(ctx context.Context, kernelID string) error
	Complete(ctx context.Context, kernelID string, req protocol.CompletionRequest) ([]string, error)
	StartService(ctx context.Context, kernelID string, req protocol.ServiceRequest) (protocol.ServiceResult, error)
	ShutdownService(ctx context.Context, kernelID, name string) error
	KernelLogs(ctx context.Context, kernelID string) (string, error)
	Get(kernelID string) (kernel.Info, error)
	List() []kernel.Info
}

var _ KernelService = (*kernel.Manager)(nil)

// KernelMethodsOptions tune the kernel RPC methods.
type KernelMethodsOptions struct {
	// KernelHost is create_kernels' kernel_host: the address the manager
	// and app proxy reach kernel ports at (container.advertised-host, else
	// bind-host). Empty means "127.0.0.1".
	KernelHost string
	// OnAlreadyTerminated is called by sync_kernel_registry for each kernel
	// the manager lists but this agent does not know, and by destroy_kernel
	// of a kernel this agent does not know (without suppress_events):
	// upstream sends kernel_terminated with reason already-terminated. May
	// be nil.
	OnAlreadyTerminated func(ctx context.Context, kernelID, sessionID string)
	// Images makes each kernel's image present per its auto_pull before the
	// kernel is created. Nil pulls nothing: a missing image then fails the
	// creation.
	Images *images.Service
	// Creation hooks, in upstream's event order: OnPreparing first,
	// OnPulling only when the image is pulled (image is its canonical name),
	// OnCreating before the container is made, OnStarted after it started
	// with create_kernels' result for it (the agent sends kernel_preparing,
	// kernel_pulling, kernel_creating and kernel_started). All may be nil.
	OnPreparing func(ctx context.Context, kernelID, sessionID string)
	OnPulling   func(ctx context.Context, kernelID, sessionID, image string)
	OnCreating  func(ctx context.Context, kernelID, sessionID string)
	OnStarted   func(ctx context.Context, kernelID, sessionID string, result map[string]any)
	// DestroyTimeout bounds the destroys that sync_kernel_registry and an
	// exec-timeout start in the background; zero means 2 minutes.
	DestroyTimeout time.Duration
	// Events receives execute's execution_started, execution_finished and
	// execution_timeout; nil drops them.
	Events Emitter
	Logger zerolog.Logger
}

// KernelMethods serves the kernel lifecycle RPC methods over a
// KernelService and is the Server's KernelRegistry (check_creating,
// check_running, sync_kernel_registry, scan_gpu_alloc_map).
type KernelMethods struct {
	svc  KernelService
	opts KernelMethodsOptions

	mu         sync.Mutex
	suppressed map[string]bool // kernel id -> its termination event is not to be sent
	background sync.WaitGroup
	// modelCtx ends the model-service starts on Close.
	modelCtx    context.Context
	modelCancel context.CancelFunc
}

// NewKernelMethods wraps a kernel service.
func NewKernelMethods(svc KernelService, opts KernelMethodsOptions) *KernelMethods {
	if opts.KernelHost == "" {
		opts.KernelHost = "127.0.0.1"
	}
	if opts.DestroyTimeout <= 0 {
		opts.DestroyTimeout = 2 * time.Minute
	}
	mctx, cancel := context.WithCancel(context.Background())
	return &KernelMethods{svc: svc, opts: opts, suppressed: map[string]bool{}, modelCtx: mctx, modelCancel: cancel}
}

// RegisterKernelMethods registers create_kernels, destroy_kernel, execute,
// interrupt_kernel, get_completions, get_logs, start_service and
// shutdown_service, and the file methods upload_file, download_file,
// download_single and list_files on s. Pass the same km as Deps.Kernels to New so that
// check_creating, check_running, sync_kernel_registry and
// scan_gpu_alloc_map see the same kernels.
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

// TakeSuppressed reports whether the kernel's termination event must not
// be sent (destroy_kernel with suppress_events=True, or a destroy by
// sync_kernel_registry), and forgets the mark. The daemon's
// kernel.Config.OnTerminated calls it before emitting kernel_terminated.
func (km *KernelMethods) TakeSuppressed(kernelID string) bool {
	km.mu.Lock()
	defer km.mu.Unlock()
	s := km.suppressed[kernelID]
	delete(km.suppressed, kernelID)
	return s
}

func (km *KernelMethods) suppress(kernelID string, on bool) {
	km.mu.Lock()
	defer km.mu.Unlock()
	if on {
		km.suppressed[kernelID] = true
	} else {
		delete(km.suppressed, kernelID)
	}
}

// Wait waits for the destroys sync_kernel_registry and exec-timeouts
// started in the background.
func (km *KernelMethods) Wait() { km.background.Wait() }

// Close stops the model-service starts still waiting for their runner's
// answer and waits for all the background work.
func (km *KernelMethods) Close() {
	km.modelCancel()
	km.background.Wait()
}

// kernelErr maps a kernel-lifecycle error onto the upstream exception name
// the manager sees in the FAILURE.
func kernelErr(err error) error {
	if err == nil {
		return nil
	}
	var rpcErr *Error
	if errors.As(err, &rpcErr) {
		return err
	}
	name := "AgentError"
	switch {
	case errors.Is(err, alloc.ErrInsufficientResource):
		name = "InsufficientResource"
	case errors.Is(err, alloc.ErrNotMultipleOfQuantum):
		name = "NotMultipleOfQuantum"
	case errors.Is(err, alloc.ErrInvalidArgument):
		name = "InvalidResourceArgument"
	case errors.Is(err, alloc.ErrInvalidCombination):
		name = "InvalidResourceCombination"
	case errors.Is(err, alloc.ErrFragmented):
		name = "FractionalResourceFragmented"
	case errors.Is(err, alloc.ErrUnsupportedSlot):
		name = "UnsupportedResource"
	case errors.Is(err, alloc.ErrResource):
		name = "ResourceError"
	case errors.Is(err, alloc.ErrConfiguration):
		name = "InvalidResourceConfigError"
	case errors.Is(err, portpool.ErrExhausted):
		name = "PortPoolExhaustedError"
	case errors.Is(err, kernel.ErrKernelNotFound):
		name = "KernelNotFoundError"
	case errors.Is(err, kernel.ErrImageNotFound):
		name = "ImageNotAvailable"
	case errors.Is(err, kernel.ErrImageArchitectureMismatch):
		name = "ImageArchitectureMismatchError"
	case errors.Is(err, kernel.ErrModelFolderNotSpecified):
		name = "ModelFolderNotSpecifiedError"
	case errors.Is(err, kernel.ErrModelDefinitionNotFound):
		name = "ModelDefinitionNotFoundError"
	case errors.Is(err, kernel.ErrModelDefinitionEmpty):
		name = "ModelDefinitionEmptyError"
	case errors.Is(err, kernel.ErrModelDefinitionInvalid):
		name = "ModelDefinitionValidationError"
	case errors.Is(err, kernel.ErrReservedPort):
		name = "ReservedPortError"
	case errors.Is(err, kernel.ErrPortConflict):
		name = "PortConflictError"
	case errors.Is(err, kernel.ErrInvalidRequest), errors.Is(err, kernel.ErrKernelExists):
		name = "InvalidArgumentError"
	case errors.Is(err, kernel.ErrRunnerTimeout), errors.Is(err, context.DeadlineExceeded):
		name = "TimeoutError"
	case errors.Is(err, runnerclient.ErrInvalidMode), errors.Is(err, runnerclient.ErrUnknownRun):
		name = "InvalidArgumentError"
	}
	return &Error{Name: name, Err: err}
}

// kernelIDArg reads a kernel or session id argument as upstream's
// UUID(raw) does.
func kernelIDArg(method, name string, v any) (string, error) {
	return canonicalKernelID(method, name, v)
}

// lookupID accepts any string id for methods that only look a kernel up:
// an id that is not a UUID cannot name a kernel, so it fails as unknown.
func (km *KernelMethods) lookupID(method string, v any) (string, error) {
	id, err := kernelIDArg(method, "kernel_id", v)
	if err != nil {
		var rpcErr *Error
		if errors.As(err, &rpcErr) && rpcErr.Name == "ValueError" {
			s, _ := v.(string)
			return "", &Error{Name: "KernelNotFoundError", Err: fmt.Errorf("%w: %s", kernel.ErrKernelNotFound, s)}
		}
		return "", err
	}
	return id, nil
}

type pendingKernel struct {
	id   string
	cfg  KernelCreationConfig
	arch string // the image's architecture, from its ImageRef
	req  kernel.CreateRequest
}

// createKernels(session_id, kernel_ids, configs, cluster_info, kernel_image_refs).
func (km *KernelMethods) createKernels(ctx context.Context, call *Call) (any, error) {
	const method = "create_kernels"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_ids"}, param{name: "configs"},
		param{name: "cluster_info"}, param{name: "kernel_image_refs"})
	if err != nil {
		return nil, err
	}
	sessionID, err := kernelIDArg(method, "session_id", args[0])
	if err != nil {
		return nil, err
	}
	ids, ok := args[1].([]any)
	if !ok {
		return nil, typeError("%s(): argument 'kernel_ids' must be a list, not %s", method, wiremsg.PyTypeName(args[1]))
	}
	configs, ok := args[2].([]any)
	if !ok {
		return nil, typeError("%s(): argument 'configs' must be a list, not %s", method, wiremsg.PyTypeName(args[2]))
	}
	if len(ids) != len(configs) {
		return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'kernel_ids' has %d items but 'configs' has %d", method, len(ids), len(configs))}
	}
	clusterInfo, err := DecodeClusterInfo("cluster_info", args[3])
	if err != nil {
		return nil, err
	}
	refs, err := DecodeKernelImageRefs("kernel_image_refs", args[4])
	if err != nil {
		return nil, err
	}
	netMode, network, err := sessionNetwork(clusterInfo)
	if err != nil {
		return nil, err
	}
	clusterJSON, err := clusterInfoJSON(clusterInfo)
	if err != nil {
		return nil, err
	}

	pending := make([]pendingKernel, len(ids))
	seen := map[string]bool{}
	for i := range ids {
		id, err := kernelIDArg(method, fmt.Sprintf("kernel_ids[%d]", i), ids[i])
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
		shm, err := shmemBytes(fmt.Sprintf("configs[%d][\"resource_opts\"][\"shmem\"]", i), cfg.ResourceOpts)
		if err != nil {
			return nil, err
		}
		pending[i] = pendingKernel{id: id, cfg: cfg, arch: arch, req: creationRequest(id, sessionID, image, cfg)}
		if pending[i].req.ModelDefinition, err = modelDefinition(cfg); err != nil {
			return nil, kernelErr(fmt.Errorf("configs[%d]: %w", i, err))
		}
		pending[i].req.ShmSize = shm
		if pending[i].req.DenyFragmentation, err = denyFragmentation(fmt.Sprintf("configs[%d][\"resource_opts\"][\"allow_fractional_resource_fragmentation\"]", i), cfg.ResourceOpts); err != nil {
			return nil, err
		}
		pending[i].req.Network, pending[i].req.NetworkMode = network, netMode
		pending[i].req.ClusterHosts, pending[i].req.ClusterInfo = clusterInfo.Hosts, clusterJSON
		if kp := clusterInfo.SSHKeypair; kp != nil {
			pending[i].req.ClusterSSHKey = &scratch.SSHKeypair{PublicKey: kp.PublicKey, PrivateKey: kp.PrivateKey}
			pending[i].req.ClusterSSHPortMapping = clusterInfo.SSHPortMapping
		}
	}

	// Kernels are created concurrently; the manager bounds the concurrency
	// (kernel-creation-concurrency). As upstream, kernels that were
	// created stay even when a sibling fails: the manager cleans up.
	results := make([]any, len(pending))
	errs := make([]error, len(pending))
	var wg sync.WaitGroup
	for i := range pending {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := pending[i]
			if km.opts.OnPreparing != nil {
				km.opts.OnPreparing(ctx, p.req.KernelID, p.req.SessionID)
			}
			// As upstream, before any pull: the node cannot run it.
			if err := kernel.CheckArchitecture(p.arch); err != nil {
				errs[i] = kernelErr(err)
				return
			}
			if err := km.ensureImage(ctx, p); err != nil {
				errs[i] = err
				return
			}
			if km.opts.OnCreating != nil {
				km.opts.OnCreating(ctx, p.req.KernelID, p.req.SessionID)
			}
			created, err := km.svc.Create(ctx, p.req)
			if err != nil {
				errs[i] = creationErr(p, err)
				return
			}
			result := km.creationResult(p, created)
			results[i] = result
			if km.opts.OnStarted != nil {
				km.opts.OnStarted(ctx, p.req.KernelID, p.req.SessionID, result)
			}
			km.startModels(p)
		}(i)
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	switch len(failed) {
	case 0:
		return results, nil
	case 1:
		return nil, failed[0]
	}
	msgs := make([]string, len(failed))
	for i, err := range failed {
		msgs[i] = err.Error()
	}
	return nil, &Error{Name: "TaskGroupError", Err: fmt.Errorf("agent.create_kernels() failed: %s", strings.Join(msgs, "; "))}
}

// imageSpec is what the image service needs from a kernel's config.
func imageSpec(ref string, img ImageConfig) images.Image {
	return images.Image{
		Ref: ref, Digest: img.Digest, RepoDigest: img.RepoDigest,
		Registry: images.Registry{Name: img.Registry.Name, URL: img.Registry.URL, Username: img.Registry.Username, Password: img.Registry.Password},
	}
}

// ensureImage pulls the kernel's image when its auto_pull asks for it, as
// upstream's create_kernel does between kernel_preparing and
// kernel_creating. Local images (is_local) are never pulled.
func (km *KernelMethods) ensureImage(ctx context.Context, p pendingKernel) error {
	if km.opts.Images == nil || p.cfg.Image.IsLocal {
		return nil
	}
	onPull := func() {
		if km.opts.OnPulling != nil {
			km.opts.OnPulling(ctx, p.req.KernelID, p.req.SessionID, p.req.Image)
		}
	}
	if _, err := km.opts.Images.Ensure(ctx, imageSpec(p.req.Image, p.cfg.Image), images.Policy(p.cfg.AutoPull), onPull); err != nil {
		return imageErr(err)
	}
	return nil
}

// imageErr names an image error as upstream's exceptions.
func imageErr(err error) error {
	switch {
	case errors.Is(err, images.ErrNotAvailable):
		return &Error{Name: "ImageNotAvailable", Err: err}
	case errors.Is(err, images.ErrPullTimeout):
		return &Error{Name: "ImagePullTimeoutError", Err: err}
	case errors.Is(err, images.ErrPullFailed):
		return &Error{Name: "ImagePullFailedError", Err: err}
	}
	return &Error{Name: "AgentError", Err: err}
}

// creationErr names the image error of a kernel whose image was missing at
// creation: with auto_pull none or a local image (never pulled) as
// upstream's ImageNotAvailable, otherwise as a failed pull (no image
// service, or the image went away after the pull).
func creationErr(p pendingKernel, err error) error {
	if errors.Is(err, kernel.ErrImageNotFound) {
		if p.cfg.AutoPull == AutoPullNone || p.cfg.Image.IsLocal {
			return &Error{Name: "ImageNotAvailable", Err: fmt.Errorf("image %s is not available locally (auto_pull %s, is_local %v): %w", p.req.Image, p.cfg.AutoPull, p.cfg.Image.IsLocal, err)}
		}
		return &Error{Name: "ImagePullFailedError", Err: fmt.Errorf("image %s is not available locally after the pull step (auto_pull %s): %w", p.req.Image, p.cfg.AutoPull, err)}
	}
	return kernelErr(err)
}

// creationRequest maps a decoded KernelCreationConfig onto the kernel
// manager's request.
func creationRequest(kernelID, sessionID, image string, cfg KernelCreationConfig) kernel.CreateRequest {
	mounts := make([]scratch.Mount, 0, len(cfg.Mounts))
	var persistent []string
	for _, m := range cfg.Mounts {
		persistent = append(persistent, m.KernelPath)
		// As upstream's mount_vfolders: prevent_vfolder_mounts keeps the
		// .logs folder only.
		if cfg.Internal.preventVFolders && m.Name != ".logs" {
			continue
		}
		mounts = append(mounts, scratch.Mount{Source: m.HostPath, Target: m.KernelPath, ReadOnly: m.MountPerm == "ro"})
	}
	env := cfg.Environ
	if len(persistent) > 0 {
		// Every vfolder's path, mounted or not, as upstream's create_kernel.
		env = maps.Clone(cfg.Environ)
		if env == nil {
			env = map[string]string{}
		}
		env["BACKENDAI_PERSISTENT_PATHS"] = strings.Join(persistent, ":")
	}
	var userKey *scratch.SSHKeypair
	if kp := cfg.UserSSHKeypair; kp != nil {
		userKey = &scratch.SSHKeypair{PublicKey: kp.PublicKey, PrivateKey: kp.PrivateKey}
	}
	hostname := cfg.ClusterHostname
	if hostname == "" && cfg.ClusterRole != "" {
		hostname = fmt.Sprintf("%s%d", cfg.ClusterRole, cfg.ClusterIdx)
	}
	req := kernel.CreateRequest{
		KernelID: kernelID, SessionID: sessionID, Image: image,
		ResourceSlots: cfg.ResourceSlots, Env: env, Mounts: mounts,
		OwnerUserID: cfg.OwnerUserID, OwnerProjectID: cfg.OwnerProjectID,
		ClusterRole: cfg.ClusterRole, ClusterIdx: cfg.ClusterIdx, ClusterHostname: hostname,
		PreopenPorts: cfg.PreopenPorts, BlockServicePorts: cfg.Internal.blockServicePorts,
		UserSSHKey:        userKey,
		SupplementaryGIDs: cfg.SupplementaryGIDs,
		BootstrapScript:   cfg.BootstrapScript,
		Dotfiles:          cfg.Internal.dotfiles,
		SudoSession:       cfg.Internal.sudo,
		DockerCredentials: cfg.Internal.dockerCredentials,
		ImageLabels:       cfg.Image.Labels,
		SessionType:       cfg.SessionType,
	}
	if cfg.UID >= 0 {
		uid := cfg.UID
		req.UID = &uid
	}
	if cfg.MainGID >= 0 {
		gid := cfg.MainGID
		req.MainGID = &gid
	}
	return req
}

func servicePortsWire(ports []scratch.ServicePort) []any {
	out := make([]any, 0, len(ports))
	for _, sp := range ports {
		container := make([]any, len(sp.ContainerPorts))
		for i, p := range sp.ContainerPorts {
			container[i] = int64(p)
		}
		host := make([]any, len(sp.HostPorts))
		for i, p := range sp.HostPorts {
			host[i] = int64(p)
		}
		entry := map[string]any{
			"name": sp.Name, "protocol": sp.Protocol, "container_ports": container, "host_ports": host,
			"is_inference": sp.IsInference,
		}
		// get-apps' keys, only where the image's definition sets them,
		// as upstream's ServiceParser.get_apps reports them.
		if sp.URLTemplate != "" {
			entry["url_template"] = sp.URLTemplate
		}
		if len(sp.AllowedArguments) > 0 {
			entry["allowed_arguments"] = stringsWire(sp.AllowedArguments)
		}
		if len(sp.AllowedEnvs) > 0 {
			entry["allowed_envs"] = stringsWire(sp.AllowedEnvs)
		}
		out = append(out, entry)
	}
	return out
}

func stringsWire(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// creationResult is one element of create_kernels' answer
// (KernelCreationResult).
func (km *KernelMethods) creationResult(p pendingKernel, c kernel.Created) map[string]any {
	slots := make(map[string]any, len(p.cfg.ResourceSlots))
	for k, d := range p.cfg.ResourceSlots {
		slots[k] = d.String()
	}
	allocations := make(map[string]any, len(c.Allocation))
	for kind, da := range c.Allocation {
		perSlot := make(map[string]any, len(da))
		for slot, devs := range da {
			perDev := make(map[string]any, len(devs))
			for dev, amount := range devs {
				perDev[dev] = amount.String()
			}
			perSlot[slot] = perDev
		}
		allocations[kind] = perSlot
	}
	mounts := make([]any, 0, len(p.req.Mounts))
	for _, m := range p.req.Mounts {
		mounts = append(mounts, m.String())
	}
	attached := make(map[string]any, len(c.Attached))
	for name, devs := range c.Attached {
		list := make([]any, 0, len(devs))
		for _, d := range devs {
			data := make(map[string]any, len(d.Data))
			for k, v := range d.Data {
				data[k] = v
			}
			list = append(list, map[string]any{"device_id": d.DeviceID, "model_name": d.ModelName, "data": data})
		}
		attached[name] = list
	}
	containerID := c.ContainerID
	if containerID == "" {
		containerID = c.Info.ContainerID
	}
	servicePorts := c.ServicePorts
	if servicePorts == nil {
		servicePorts = c.Info.ServicePorts
	}
	return map[string]any{
		"id":            p.id,
		"kernel_host":   km.opts.KernelHost,
		"repl_in_port":  int64(c.ReplInPort),
		"repl_out_port": int64(c.ReplOutPort),
		"stdin_port":    int64(0), // legacy
		"stdout_port":   int64(0), // legacy
		"service_ports": servicePortsWire(servicePorts),
		"container_id":  containerID,
		"resource_spec": map[string]any{
			"container_id": containerID, "slots": slots, "allocations": allocations, "mounts": mounts,
			"scratch_disk_size": int64(0),
		},
		"attached_devices": attached,
		"agent_addr":       p.cfg.AgentAddr,
		"scaling_group":    p.cfg.ScalingGroup,
	}
}

// reasonArg reads a termination reason: a str, a KernelLifecycleEventReason
// member, or None (user-requested). verbatim is true for a str, which
// kernel_terminated sends back as it came: the 26.8 manager's terminator
// passes its own strings (ROUTE_TERMINATION, ...), and unpickling them as
// the enum would fail in the manager.
func reasonArg(method string, v any) (reason lifecycle.Reason, verbatim bool, err error) {
	switch x := v.(type) {
	case nil:
		return lifecycle.UserRequested, false, nil
	case string:
		if x == "" {
			return lifecycle.UserRequested, false, nil
		}
		return lifecycle.Reason(x), true, nil
	case wiremsg.Enum:
		reason, err := enumValue(method+"(): argument 'reason'", x, x.Class)
		return lifecycle.Reason(reason), false, err
	}
	return "", false, typeError("%s(): argument 'reason' must be str or None, not %s", method, wiremsg.PyTypeName(v))
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
	sid, err := argString(method, "session_id", args[1])
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
		return nil, typeError("%s(): argument 'suppress_events' must be bool, not %s", method, wiremsg.PyTypeName(args[3]))
	}
	if suppress {
		km.suppress(kid, true)
	}
	destroy := km.svc.Destroy
	if verbatim {
		destroy = km.svc.DestroyEcho
	}
	if _, err := destroy(ctx, kid, reason); err != nil {
		if suppress {
			km.suppress(kid, false)
		}
		if errors.Is(err, kernel.ErrKernelNotFound) {
			// Upstream answers None and reports the kernel gone, so that
			// the manager stops waiting for it (agent/agent.py, the
			// destroy of a kernel missing from the registry).
			if !suppress && km.opts.OnAlreadyTerminated != nil {
				km.opts.OnAlreadyTerminated(ctx, kid, sid)
			}
			return nil, nil
		}
		return nil, kernelErr(err)
	}
	return nil, nil
}

func floatArg(method, name string, v any) (float64, bool, error) {
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return x, true, nil
	case int64:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	case decimal.Decimal:
		f, _ := x.Float64()
		return f, true, nil
	}
	return 0, false, typeError("%s(): argument '%s' must be float or None, not %s", method, name, wiremsg.PyTypeName(v))
}

func optsArg(method, name string, v any) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	m, err := plainMap(method+"(): argument '"+name+"'", v)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// execute(session_id, kernel_id, api_version, run_id, mode, code, opts, flush_timeout).
func (km *KernelMethods) execute(ctx context.Context, call *Call) (any, error) {
	const method = "execute"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_id"}, param{name: "api_version"},
		param{name: "run_id"}, param{name: "mode"}, param{name: "code"}, param{name: "opts"}, param{name: "flush_timeout"})
	if err != nil {
		return nil, err
	}
	sessionID, err := argString(method, "session_id", args[0])
	if err != nil {
		return nil, err
	}
	kid, err := km.lookupID(method, args[1])
	if err != nil {
		return nil, err
	}
	if _, err := argInt(method, "api_version", args[2]); err != nil {
		return nil, err
	}
	runID := ""
	if args[3] != nil {
		if runID, err = argString(method, "run_id", args[3]); err != nil {
			return nil, err
		}
	}
	mode, err := argString(method, "mode", args[4])
	if err != nil {
		return nil, err
	}
	switch mode {
	case runnerclient.ModeQuery, runnerclient.ModeBatch, runnerclient.ModeInput, runnerclient.ModeContinue:
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
		return nil, typeError("%s(): argument 'code' must be str, not %s", method, wiremsg.PyTypeName(args[5]))
	}
	opts, err := optsArg(method, "opts", args[6])
	if err != nil {
		return nil, err
	}
	flush, given, err := floatArg(method, "flush_timeout", args[7])
	if err != nil {
		return nil, err
	}
	var execOpts runnerclient.ExecOptions
	if given {
		if math.IsNaN(flush) || flush < 0 || flush > 24*3600 {
			return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'flush_timeout' %v is out of range", method, flush)}
		}
		execOpts.FlushTimeout = time.Duration(flush * float64(time.Second))
	}
	if mode == runnerclient.ModeBatch {
		if execOpts.Batch, err = runnerclient.BatchFromOptions(opts); err != nil {
			return nil, &Error{Name: "TypeError", Err: fmt.Errorf("%s(): argument 'opts': %w", method, err)}
		}
	}
	// Before every call reaches the runner, as upstream (agent/agent.py
	// execute), even one that then fails.
	km.emitExecution(ctx, events.ExecutionStarted{SessionID: sessionID})
	res, err := km.svc.Execute(ctx, kid, runID, mode, code, execOpts)
	if err != nil {
		return nil, kernelErr(err)
	}
	km.afterExecute(ctx, sessionID, kid, res)
	out := res.Wire()
	if _, ok := out["files"]; !ok {
		out["files"] = []any{}
	}
	return out, nil
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
		return nil, kernelErr(err)
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
	if value, err = argString(method, name, args[1]); err != nil {
		return "", "", nil, err
	}
	if opts, err = optsArg(method, "opts", args[2]); err != nil {
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
	req := protocol.CompletionRequest{Code: text, Options: protocol.CompletionOptions{
		Row: optInt(opts, "row"), Col: optInt(opts, "col"), Line: line, Post: post}}
	suggestions, err := km.svc.Complete(ctx, kid, req)
	if err != nil {
		if errors.Is(err, kernel.ErrKernelNotFound) || errors.Is(err, kernel.ErrNotRunning) {
			return nil, kernelErr(err)
		}
		return map[string]any{"result": map[string]any{"status": "failed", "error": err.Error(), "suggestions": []any{}}}, nil
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
		return nil, kernelErr(err)
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
	info, err := km.svc.Get(kid)
	if err != nil {
		return nil, kernelErr(err)
	}
	if info.BlockServicePorts {
		// As upstream's DockerKernel.start_service (agent/docker/kernel.py).
		return map[string]any{"status": "failed", "error": "operation blocked"}, nil
	}
	known := false
	for _, sp := range info.ServicePorts {
		if sp.Name == service {
			known = true
		}
	}
	if !known {
		return map[string]any{"status": "failed", "error": "invalid service name"}, nil
	}
	res, err := km.svc.StartService(ctx, kid, protocol.ServiceRequest{Name: service, Options: wiremsg.ToJSON(opts).(map[string]any)})
	if err != nil {
		if errors.Is(err, kernel.ErrKernelNotFound) || errors.Is(err, kernel.ErrNotRunning) {
			return nil, kernelErr(err)
		}
		return map[string]any{"status": "failed", "error": err.Error()}, nil
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
	service, err := argString(method, "service", args[1])
	if err != nil {
		return nil, err
	}
	if err := km.svc.ShutdownService(ctx, kid, service); err != nil {
		return nil, kernelErr(err)
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
			"id": info.KernelID, "session_id": info.SessionID, "container_id": info.ContainerID, "image": info.Image,
			"state": info.State, "repl_in_port": int64(info.ReplInPort), "repl_out_port": int64(info.ReplOutPort),
			"service_ports": servicePortsWire(info.ServicePorts), "created_at": info.CreatedAt.UTC().Format(time.RFC3339),
		})
	}
	return out, nil
}

// --- KernelRegistry ---

// IsPulling implements KernelRegistry (check_pulling): whether a pull of
// the image is in flight, for a kernel or for check_and_pull.
func (km *KernelMethods) IsPulling(_ context.Context, image string) (bool, error) {
	if km.opts.Images == nil {
		return false, nil
	}
	return km.opts.Images.IsPulling(image), nil
}

func (km *KernelMethods) state(kernelID string) string {
	if u, err := wiremsg.ParseUUID(kernelID); err == nil {
		kernelID = u.String()
	}
	info, err := km.svc.Get(kernelID)
	if err != nil {
		return ""
	}
	return info.State
}

// IsCreating implements KernelRegistry (check_creating): true for a
// kernel being created or already registered, as upstream
// (agent/server.py).
func (km *KernelMethods) IsCreating(_ context.Context, kernelID string) (bool, error) {
	return km.state(kernelID) != "", nil
}

// IsRunning implements KernelRegistry.
func (km *KernelMethods) IsRunning(_ context.Context, kernelID string) (bool, error) {
	return km.state(kernelID) == "running", nil
}

// SyncWithManager implements KernelRegistry as upstream's
// sync_kernel_registry: kernels the manager lists but this agent does not
// know are reported through OnAlreadyTerminated; local kernels the manager
// does not list are destroyed in the background with reason
// not-found-in-manager and their events suppressed. Kernels still being
// created are left alone (upstream registers a kernel only once created).
func (km *KernelMethods) SyncWithManager(ctx context.Context, live []KernelSession) error {
	local := map[string]kernel.Info{}
	for _, info := range km.svc.List() {
		local[info.KernelID] = info
	}
	known := make(map[string]bool, len(live))
	for _, ks := range live {
		kid := ks.KernelID
		if u, err := wiremsg.ParseUUID(kid); err == nil {
			kid = u.String()
		}
		known[kid] = true
		if _, ok := local[kid]; !ok && km.opts.OnAlreadyTerminated != nil {
			km.opts.OnAlreadyTerminated(ctx, kid, ks.SessionID)
		}
	}
	var stale []string
	for kid, info := range local {
		if !known[kid] && info.State == "running" {
			stale = append(stale, kid)
		}
	}
	sort.Strings(stale)
	for _, kid := range stale {
		km.suppress(kid, true)
		km.background.Add(1)
		go func(kid string) {
			defer km.background.Done()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), km.opts.DestroyTimeout)
			defer cancel()
			if _, err := km.svc.Destroy(dctx, kid, lifecycle.NotFoundInManager); err != nil {
				km.suppress(kid, false)
			}
		}(kid)
	}
	return nil
}

// GPUAllocMap implements KernelRegistry as upstream's scan_gpu_alloc_map:
// the fractional CUDA shares (cuda.shares) allocated on each device,
// summed over this agent's kernels, as {device id: str(amount)}.
func (km *KernelMethods) GPUAllocMap(context.Context) (map[string]string, error) {
	sums := map[string]decimal.Decimal{}
	for _, info := range km.svc.List() {
		for dev, amount := range info.Allocation["cuda"]["cuda.shares"] {
			sums[dev] = sums[dev].Add(amount)
		}
	}
	out := make(map[string]string, len(sums))
	for dev, d := range sums {
		if d.IsPositive() {
			out[dev] = d.String()
		}
	}
	return out, nil
}
