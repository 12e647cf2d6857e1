package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// pending is one kernel of a create_kernels call, checked and mapped onto
// the kernel manager's request.
type pending struct {
	cfg  sessionapi.KernelCreationConfig
	arch string
	req  kernel.CreateRequest
}

// CreateKernels creates a session's kernels as upstream's create_kernels
// (agent/agent.py): every kernel is checked before any is made, then each
// goes through kernel_preparing, the architecture check, the pull per its
// auto_pull (kernel_pulling), kernel_creating, the container and
// kernel_started, concurrently; the manager bounds the concurrency
// (kernel-creation-concurrency). As upstream, kernels that were created
// stay when a sibling fails: the manager cleans up. The answer is one
// KernelCreationResult dict per kernel, in the request's order.
func (s *Service) CreateKernels(ctx context.Context, req sessionapi.CreateKernels) ([]any, error) {
	netMode, network, err := sessionNetwork(req.Cluster)
	if err != nil {
		return nil, err
	}
	kernels := make([]pending, len(req.Kernels))
	for i, k := range req.Kernels {
		p := pending{cfg: k.Config, arch: k.Architecture, req: creationRequest(k.ID, req.SessionID, k.Image, k.Config)}
		if p.req.ModelDefinition, err = modelDefinition(k.Config); err != nil {
			return nil, NamedError(fmt.Errorf("configs[%d]: %w", i, err))
		}
		p.req.ShmSize, p.req.DenyFragmentation = k.Config.ShmSize, k.Config.DenyFragmentation
		p.req.Network, p.req.NetworkMode = network, netMode
		p.req.ClusterHosts, p.req.ClusterInfo = clusterHosts(req.Cluster.Hosts), req.Cluster.JSON
		if kp := req.Cluster.SSHKeypair; kp != nil {
			p.req.ClusterSSHKey = &scratch.SSHKeypair{PublicKey: kp.PublicKey, PrivateKey: kp.PrivateKey}
			p.req.ClusterSSHPortMapping = req.Cluster.SSHPortMapping
		}
		kernels[i] = p
	}

	results := make([]any, len(kernels))
	errs := make([]error, len(kernels))
	var wg sync.WaitGroup
	for i := range kernels {
		wg.Go(func() {
			results[i], errs[i] = s.createOne(ctx, kernels[i])
		})
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
	return nil, &sessionapi.Error{Name: "TaskGroupError", Err: fmt.Errorf("agent.create_kernels() failed: %s", strings.Join(msgs, "; "))}
}

// createOne takes one kernel from kernel_preparing to kernel_started.
func (s *Service) createOne(ctx context.Context, p pending) (any, error) {
	if s.opts.OnPreparing != nil {
		s.opts.OnPreparing(ctx, p.req.KernelID, p.req.SessionID)
	}
	// As upstream, before any pull: the node cannot run it.
	if err := kernel.CheckArchitecture(p.arch); err != nil {
		return nil, NamedError(err)
	}
	if err := s.ensureImage(ctx, p); err != nil {
		return nil, err
	}
	if s.opts.OnCreating != nil {
		s.opts.OnCreating(ctx, p.req.KernelID, p.req.SessionID)
	}
	created, err := s.kernels.Create(ctx, p.req)
	if err != nil {
		return nil, creationErr(p, err)
	}
	result := s.creationResult(p, created)
	if s.opts.OnStarted != nil {
		s.opts.OnStarted(ctx, p.req.KernelID, p.req.SessionID, result)
	}
	s.startModels(p.req)
	return result, nil
}

// imageSpec is what the image service needs from a kernel's image config.
func imageSpec(ref string, img sessionapi.ImageConfig) images.Image {
	return images.Image{
		Ref: ref, Digest: img.Digest, RepoDigest: img.RepoDigest,
		Registry: images.Registry{Name: img.Registry.Name, URL: img.Registry.URL, Username: img.Registry.Username, Password: img.Registry.Password},
	}
}

// ensureImage pulls the kernel's image when its auto_pull asks for it, as
// upstream's create_kernel does between kernel_preparing and
// kernel_creating. Local images (is_local) are never pulled.
func (s *Service) ensureImage(ctx context.Context, p pending) error {
	if s.opts.Images == nil || p.cfg.Image.IsLocal {
		return nil
	}
	onPull := func() {
		if s.opts.OnPulling != nil {
			s.opts.OnPulling(ctx, p.req.KernelID, p.req.SessionID, p.req.Image)
		}
	}
	if _, err := s.opts.Images.Ensure(ctx, imageSpec(p.req.Image, p.cfg.Image), images.Policy(p.cfg.AutoPull), onPull); err != nil {
		return imageErr(err)
	}
	return nil
}

// creationErr names the image error of a kernel whose image was missing at
// creation: with auto_pull none or a local image (never pulled) as
// upstream's ImageNotAvailable, otherwise as a failed pull (no image
// service, or the image went away after the pull).
func creationErr(p pending, err error) error {
	if errors.Is(err, kernel.ErrImageNotFound) {
		if p.cfg.AutoPull == sessionapi.AutoPullNone || p.cfg.Image.IsLocal {
			return &sessionapi.Error{Name: "ImageNotAvailable", Err: fmt.Errorf("image %s is not available locally (auto_pull %s, is_local %v): %w", p.req.Image, p.cfg.AutoPull, p.cfg.Image.IsLocal, err)}
		}
		return &sessionapi.Error{Name: "ImagePullFailedError", Err: fmt.Errorf("image %s is not available locally after the pull step (auto_pull %s): %w", p.req.Image, p.cfg.AutoPull, err)}
	}
	return NamedError(err)
}

func clusterHosts(hosts []sessionapi.ClusterHost) []kernel.ClusterHost {
	if hosts == nil {
		return nil
	}
	out := make([]kernel.ClusterHost, len(hosts))
	for i, h := range hosts {
		out[i] = kernel.ClusterHost(h)
	}
	return out
}

// creationRequest maps a decoded KernelCreationConfig onto the kernel
// manager's request.
func creationRequest(kernelID, sessionID, image string, cfg sessionapi.KernelCreationConfig) kernel.CreateRequest {
	mounts := make([]scratch.Mount, 0, len(cfg.Mounts))
	var persistent []string
	for _, m := range cfg.Mounts {
		persistent = append(persistent, m.KernelPath)
		// As upstream's mount_vfolders: prevent_vfolder_mounts keeps the
		// .logs folder only.
		if cfg.Internal.PreventVFolders && m.Name != ".logs" {
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
	var dotfiles []kernel.Dotfile
	for _, f := range cfg.Internal.Dotfiles {
		dotfiles = append(dotfiles, kernel.Dotfile(f))
	}
	req := kernel.CreateRequest{
		KernelID: kernelID, SessionID: sessionID, Image: image,
		ResourceSlots: cfg.ResourceSlots, Env: env, Mounts: mounts,
		OwnerUserID: cfg.OwnerUserID, OwnerProjectID: cfg.OwnerProjectID,
		ClusterRole: cfg.ClusterRole, ClusterIdx: cfg.ClusterIdx, ClusterHostname: hostname,
		PreopenPorts: cfg.PreopenPorts, BlockServicePorts: cfg.Internal.BlockServicePorts,
		UserSSHKey:        userKey,
		SupplementaryGIDs: cfg.SupplementaryGIDs,
		BootstrapScript:   cfg.BootstrapScript,
		Dotfiles:          dotfiles,
		SudoSession:       cfg.Internal.Sudo,
		DockerCredentials: cfg.Internal.DockerCredentials,
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

// creationResult is one element of create_kernels' answer
// (KernelCreationResult), which kernel_started carries too.
func (s *Service) creationResult(p pending, c kernel.Created) map[string]any {
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
	sp := c.ServicePorts
	if sp == nil {
		sp = c.Info.ServicePorts
	}
	return map[string]any{
		"id":            p.req.KernelID,
		"kernel_host":   s.opts.KernelHost,
		"repl_in_port":  int64(c.ReplInPort),
		"repl_out_port": int64(c.ReplOutPort),
		"stdin_port":    int64(0), // legacy
		"stdout_port":   int64(0), // legacy
		"service_ports": sessionapi.ServicePortDicts(servicePorts(sp)),
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

// sessionNetwork is how a session's kernels are networked, as upstream's
// apply_network: mode "bridge" joins network_config.network_name (older
// managers sent cluster_info.network_name and no mode), "host" shares the
// host's network, no mode leaves Docker's default bridge. Any other mode
// is a network plugin upstream would load (overlay for multi-node
// sessions); it is refused by name rather than run on the default bridge,
// where the session's kernels could not reach each other.
func sessionNetwork(ci sessionapi.ClusterInfo) (mode, name string, err error) {
	const path = `cluster_info["network_config"]`
	// The RPC layer has checked that a mode is a non-empty str.
	mode, _ = ci.NetworkConfig["mode"].(string)
	switch mode {
	case kernel.NetworkModeBridge:
		name, _ = ci.NetworkConfig["network_name"].(string)
		if name == "" {
			return "", "", pathError("KeyError", path, "mode %q needs a network_name", mode)
		}
		return mode, name, nil
	case "":
		if ci.NetworkName != "" && ci.NetworkName != "host" {
			return kernel.NetworkModeBridge, ci.NetworkName, nil
		}
		return "", "", nil
	}
	if err := kernel.CheckNetworkMode(mode); err != nil {
		return "", "", &sessionapi.Error{Name: "RuntimeError", Err: fmt.Errorf("%s[\"mode\"]: %w", path, err)}
	}
	return mode, "", nil
}

// RestartUpdate merges restart_kernel's updated_config over a kernel's
// stored request as upstream's {**existing, **updated}: each key present
// replaces the stored value. Keys that only matter at first creation are
// ignored, and resource_slots has no effect (the allocation is kept, as
// upstream reads resource.txt back).
func RestartUpdate(update sessionapi.KernelCreationConfig, present func(key string) bool) func(*kernel.CreateRequest) {
	mapped := creationRequest("", "", "", update)
	return func(req *kernel.CreateRequest) {
		if present("environ") {
			req.Env = mapped.Env
		}
		if present("mounts") {
			req.Mounts = mapped.Mounts
		}
		if present("preopen_ports") {
			req.PreopenPorts = mapped.PreopenPorts
		}
		if present("cluster_role") {
			req.ClusterRole = mapped.ClusterRole
		}
		if present("cluster_idx") {
			req.ClusterIdx = mapped.ClusterIdx
		}
		if present("cluster_hostname") {
			req.ClusterHostname = mapped.ClusterHostname
		}
		if present("owner_user_id") {
			req.OwnerUserID = mapped.OwnerUserID
		}
		if present("owner_project_id") {
			req.OwnerProjectID = mapped.OwnerProjectID
		}
		if present("internal_data") {
			req.BlockServicePorts = mapped.BlockServicePorts
		}
	}
}
