package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/atomicfile"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/proto/sdk"
)

// CreateRequest is one kernel of a create_kernels call. It maps upstream's
// KernelCreationConfig (common/types.py) as follows:
//
//	kernel_id (RPC argument)           -> KernelID
//	session_id (RPC argument)          -> SessionID
//	image.canonical                    -> Image (already pulled per auto_pull)
//	resource_slots                     -> ResourceSlots (Decimal strings parsed)
//	environ                            -> Env
//	mounts (vfolder mounts)            -> Mounts
//	owner_user_id / owner_project_id   -> OwnerUserID / OwnerProjectID
//	cluster_role / cluster_idx /
//	cluster_hostname                   -> ClusterRole / ClusterIdx / ClusterHostname
//	preopen_ports                      -> PreopenPorts
//	block_service_ports                -> BlockServicePorts
//	cluster_info.network_config        -> NetworkMode, Network (mode "bridge": network_name)
//	cluster_info.ssh_keypair /
//	cluster_ssh_port_mapping           -> ClusterSSHKey / ClusterSSHPortMapping, ClusterHosts
//	cluster_info                       -> ClusterInfo (config/cluster.json)
//	internal_data.ssh_keypair          -> UserSSHKey
//	resource_opts.shmem                -> ShmSize
//	image.labels                       -> ImageLabels (features, envs.corecount and
//	                                      endpoint-ports; the rest from the local image)
//
// The rest of resource_opts, bootstrap_script, startup_command, package_directory,
// the rest of internal_data, network_id (the session id) and the registry credentials
// are not used here (the caller pulls the image; see the package's report
// for what is left).
type CreateRequest struct {
	KernelID        string
	SessionID       string
	Image           string
	ResourceSlots   map[string]decimal.Decimal
	Env             map[string]string
	Mounts          []scratch.Mount
	OwnerUserID     string
	OwnerProjectID  string
	ClusterRole     string
	ClusterIdx      int
	ClusterHostname string
	// PreopenPorts are container ports published as "preopen" services.
	PreopenPorts      []int
	BlockServicePorts bool
	// ShmSize is resource_opts.shmem: the size of /dev/shm in bytes
	// (HostConfig.ShmSize; the memory limit stays as allocated). Zero
	// leaves Docker's default.
	ShmSize int64 `json:",omitempty"`
	// DenyFragmentation is resource_opts.allow_fractional_resource_fragmentation
	// = false: the allocator's fragmentation guard for fractional slots.
	DenyFragmentation bool `json:",omitempty"`
	// Network is the session's bridge network (create_local_network): the
	// container joins it instead of the default bridge, reachable by
	// ClusterHostname. Empty means Docker's default bridge.
	Network string
	// NetworkMode is cluster_info.network_config.mode: "" or
	// NetworkModeBridge (Network, or Docker's default bridge), or
	// NetworkModeHost (the host's network, reachable by ClusterHosts).
	NetworkMode string `json:",omitempty"`
	// ClusterHosts is cluster_ssh_port_mapping: the session's kernels by
	// cluster hostname with their sshd's host and port. This kernel's
	// entry, if any, is its sshd's host port; in host mode every entry is
	// an ExtraHosts line.
	ClusterHosts []ClusterHost `json:",omitempty"`
	// ClusterInfo is cluster_info as JSON, written to config/cluster.json
	// once, at creation; nil writes nothing.
	ClusterInfo []byte `json:"-"`
	// The SSH keys are written into the scratch dir once, at creation
	// (scratch.WriteSSH), and never stored in kconfig.json: a restart
	// keeps the scratch dir and so the keys, and private keys live only
	// in 0600 files.
	UserSSHKey            *scratch.SSHKeypair `json:"-"`
	ClusterSSHKey         *scratch.SSHKeypair `json:"-"`
	ClusterSSHPortMapping map[string]any      `json:"-"`
	// UID and MainGID are the request's uid and main_gid (nil: the
	// agent's kernel-uid/kernel-gid); SupplementaryGIDs its
	// supplementary_gids. The runner makes user work with them.
	UID               *int  `json:",omitempty"`
	MainGID           *int  `json:",omitempty"`
	SupplementaryGIDs []int `json:",omitempty"`
	// BootstrapScript is written to work/bootstrap.sh at creation; the
	// runner runs it before it first answers.
	BootstrapScript string `json:",omitempty"`
	// Dotfiles are internal_data.dotfiles, written at creation.
	Dotfiles []Dotfile `json:"-"`
	// SudoSession is internal_data.sudo_session_enabled.
	SudoSession bool `json:",omitempty"`
	// DockerCredentials is internal_data.docker_credentials as JSON,
	// written to config/docker-creds.json at creation.
	DockerCredentials []byte `json:"-"`
	// ImageLabels are the request's image.labels. Where upstream reads a
	// label from the request (features, envs.corecount, endpoint-ports)
	// its value wins over the local image's; kept for restart_kernel.
	ImageLabels map[string]string `json:",omitempty"`
	// SessionType is the session's type (interactive, batch, inference),
	// stored so that a restarted agent resumes a batch kernel's result
	// reporting.
	SessionType string `json:",omitempty"`
	// ModelDefinition is an inference session's validated
	// internal_data.model_definition: its services get inference ports.
	ModelDefinition *protocol.ModelDefinition `json:",omitempty"`
}

// Created is what create_kernels reports for one kernel.
type Created struct {
	Info
	ContainerID  string
	ServicePorts []scratch.ServicePort
	// Attached lists each plugin's attached devices (upstream's
	// attached_devices), by plugin name.
	Attached map[string][]sdk.AttachedDevice
}

// afterStartError is a creation failure after the container started (its
// runner never answered, say): upstream destroys such a kernel with reason
// failed-to-start, so the manager hears kernel_terminated as well as the
// failed RPC (agent/agent.py create_kernel).
type afterStartError struct{ err error }

func (e afterStartError) Error() string { return e.err.Error() }
func (e afterStartError) Unwrap() error { return e.err }

// undoStack runs the compensations of a failed creation, newest first.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

func (u undoStack) run(ctx context.Context) error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) validate(req CreateRequest) error {
	if _, err := scratch.For(m.cfg.ScratchRoot, req.KernelID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.Image == "" {
		return fmt.Errorf("%w: no image", ErrInvalidRequest)
	}
	if err := CheckNetworkMode(req.NetworkMode); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.NetworkMode == NetworkModeHost && req.Network != "" {
		return fmt.Errorf("%w: network %s given in host network mode", ErrInvalidRequest, req.Network)
	}
	if req.SessionType == SessionTypeInference && req.ModelDefinition == nil {
		return ErrModelDefinitionNotFound
	}
	for _, slot := range []string{"cpu", "mem"} {
		if _, ok := req.ResourceSlots[slot]; !ok {
			return fmt.Errorf("%w: resource slot %q is required", ErrInvalidRequest, slot)
		}
	}
	return nil
}

// Create creates and starts one kernel and waits until its runner answers.
// Everything it took (allocation, ports, scratch dir, container) is given
// back if any step fails.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Created, error) {
	if err := m.validate(req); err != nil {
		return Created{}, err
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return Created{}, fmt.Errorf("waiting for a creation slot: %w", ctx.Err())
	}
	defer func() { <-m.sem }()

	k := &kernel{id: req.KernelID, sessionID: req.SessionID, image: req.Image, state: stateCreating,
		createdAt: time.Now().UTC(), cleaned: make(chan struct{}), blockServicePorts: req.BlockServicePorts,
		sessionType: req.SessionType}
	m.mu.Lock()
	if _, dup := m.reg[req.KernelID]; dup {
		m.mu.Unlock()
		return Created{}, fmt.Errorf("%w: %s", ErrKernelExists, req.KernelID)
	}
	m.reg[req.KernelID] = k
	m.mu.Unlock()

	var undo undoStack
	undo.push(func(context.Context) error {
		m.mu.Lock()
		delete(m.reg, req.KernelID)
		m.mu.Unlock()
		return nil
	})
	created, err := m.create(ctx, req, k, &undo)
	if err != nil {
		// Compensate even when the caller's context is what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if uerr := undo.run(cctx); uerr != nil {
			m.log.Error().Err(uerr).Str("kernel", req.KernelID).Msg("cleaning up a failed kernel creation")
			err = errors.Join(err, fmt.Errorf("cleanup: %w", uerr))
		}
		if started := (afterStartError{}); errors.As(err, &started) && m.cfg.OnTerminated != nil {
			m.cfg.OnTerminated(Termination{KernelID: req.KernelID, SessionID: req.SessionID,
				Reason: lifecycle.FailedToStart, ExitCode: -1})
		}
		return Created{}, fmt.Errorf("create kernel %s: %w", req.KernelID, err)
	}
	return created, nil
}

func (m *Manager) create(ctx context.Context, req CreateRequest, k *kernel, undo *undoStack) (Created, error) {
	img, err := m.inspectImage(ctx, req)
	if err != nil {
		return Created{}, err
	}
	if err := m.checkNetwork(ctx, req.Network); err != nil {
		return Created{}, err
	}

	allocation, err := m.cfg.Allocator.AllocateWith(alloc.Slots(req.ResourceSlots), alloc.AllocateOptions{DenyFragmentation: req.DenyFragmentation})
	if err != nil {
		return Created{}, err
	}
	m.setField(func() { k.allocation = allocation })
	undo.push(func(context.Context) error { return m.cfg.Allocator.Free(allocation) })

	user := m.userOf(req, img.labels)
	dirs, err := m.scratch.Create(ctx, m.cfg.ScratchRoot, req.KernelID, user.uid, user.gid)
	if err != nil {
		return Created{}, err
	}
	m.setField(func() { k.dirs, k.uid, k.gid = dirs, user.uid, user.gid })
	undo.push(func(context.Context) error { return scratch.Remove(m.cfg.ScratchRoot, req.KernelID) })
	if err := scratch.WriteSSH(dirs, sshFiles(req, user.uid, user.gid)); err != nil {
		return Created{}, err
	}
	// As upstream's prepare_container: the bootstrap script (a new kernel
	// only), the docker credentials, then the dotfiles, which may
	// overwrite what came before.
	if err := writeBootstrap(dirs, req.BootstrapScript, user); err != nil {
		return Created{}, err
	}
	if err := writeDockerCreds(dirs, req.DockerCredentials); err != nil {
		return Created{}, err
	}
	if err := writeDotfiles(dirs, req.Dotfiles, user); err != nil {
		return Created{}, err
	}
	if err := writeClusterInfo(dirs, req.ClusterInfo); err != nil {
		return Created{}, err
	}

	l, err := m.launch(ctx, req, img, k.createdAt, dirs, allocation, nil, undo)
	if err != nil {
		return Created{}, err
	}
	m.mu.Lock()
	k.containerID, k.recovery, k.runner = l.containerID, l.recovery, l.runner
	m.markRunningLocked(k)
	info := m.infoLocked(k)
	m.mu.Unlock()
	m.log.Info().Str("kernel", req.KernelID).Str("container", l.containerID[:12]).Str("image", req.Image).Msg("kernel started")
	return Created{Info: info, ContainerID: l.containerID, ServicePorts: l.recovery.ServicePorts, Attached: l.attached}, nil
}

// sshFiles are the SSH files of a new kernel.
func sshFiles(req CreateRequest, uid, gid int) scratch.SSHFiles {
	f := scratch.SSHFiles{Cluster: req.ClusterSSHKey, PortMapping: req.ClusterSSHPortMapping, User: req.UserSSHKey, UID: uid, GID: gid}
	for _, mt := range req.Mounts {
		if filepath.Clean(mt.Target) == "/home/work/.ssh" {
			f.UserSSHMounted = true
		}
	}
	return f
}

// imageInfo is what a container takes from its image.
type imageInfo struct {
	labels       map[string]string
	servicePorts []ServicePort
	// command is the image's Cmd, a model service's default command.
	command []string
}

// inspectImage reads the image's labels and the service ports the kernel
// publishes.
func (m *Manager) inspectImage(ctx context.Context, req CreateRequest) (imageInfo, error) {
	img, err := m.cfg.Engine.ImageInspect(ctx, req.Image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return imageInfo{}, fmt.Errorf("%w: %s", ErrImageNotFound, req.Image)
		}
		return imageInfo{}, fmt.Errorf("inspect image %s: %w", req.Image, err)
	}
	var info imageInfo
	var local map[string]string
	if img.Config != nil {
		local = img.Config.Labels
	}
	info.labels = withRequestLabels(local, req.ImageLabels)
	// As upstream, image service ports and preopen ports are the main
	// kernel's alone; the others of a cluster get the intrinsic ones.
	// block_service_ports publishes them all the same: only start_service
	// is refused.
	if req.ClusterRole == "" || req.ClusterRole == "main" || req.ClusterRole == "master" {
		if info.servicePorts, err = ParseServicePorts(info.labels[ImageLabelServicePorts], info.labels[ImageLabelEndpointPorts]); err != nil {
			return imageInfo{}, fmt.Errorf("image %s label %s: %w", req.Image, ImageLabelServicePorts, err)
		}
		preopen, err := PreopenServicePorts(req.PreopenPorts)
		if err != nil {
			return imageInfo{}, err
		}
		info.servicePorts = append(preopen, info.servicePorts...)
	}
	info.servicePorts = WithIntrinsicServicePorts(info.servicePorts)
	if req.ModelDefinition != nil {
		// As upstream's _load_model_definition, after the other ports.
		if info.servicePorts, err = ModelServicePorts(*req.ModelDefinition, info.servicePorts); err != nil {
			return imageInfo{}, err
		}
	}
	if img.Config != nil {
		info.command = img.Config.Cmd
	}
	return info, nil
}

// launched is a started container whose runner answered.
type launched struct {
	containerID string
	recovery    scratch.Recovery
	runner      *runnerclient.Client
	attached    map[string][]sdk.AttachedDevice
}

// launch makes and starts the container of a kernel that holds its
// allocation and scratch dir already (a new kernel, or one restarting):
// host ports, the plugins' container settings, the files in config/, the
// container, and the runner's first answer. What it takes is pushed on
// undo; held are the pool ports the kernel holds already (a restart's),
// which undo leaves alone.
func (m *Manager) launch(ctx context.Context, req CreateRequest, img imageInfo, createdAt time.Time,
	dirs scratch.Dirs, allocation alloc.Allocation, held []int, undo *undoStack) (launched, error) {
	engine := m.cfg.Engine
	merged, err := m.prepareContainer(ctx, req.KernelID, dirs, allocation)
	if err != nil {
		return launched{}, err
	}

	rec := scratch.Recovery{
		Version: scratch.RecoveryVersion, AgentID: m.cfg.AgentID, KernelID: req.KernelID, SessionID: req.SessionID,
		Image: req.Image, RuntimeType: img.labels[ImageLabelRuntimeType], RuntimePath: img.labels[ImageLabelRuntimePath],
		CreatedAt: createdAt, ServicePorts: []scratch.ServicePort{},
	}
	if req.NetworkMode == NetworkModeHost {
		rec.NetworkMode = NetworkModeHost
	}
	assign := func() (int, error) {
		p, err := m.cfg.Ports.Assign()
		if err != nil {
			return 0, fmt.Errorf("host port: %w", err)
		}
		undo.push(func(context.Context) error { return m.cfg.Ports.Release(p) })
		return p, nil
	}
	if rec.ReplInPort, err = assign(); err != nil {
		return launched{}, err
	}
	if rec.ReplOutPort, err = assign(); err != nil {
		return launched{}, err
	}
	// As upstream's start_container: sshd's host port comes from
	// cluster_ssh_port_mapping when the manager chose one (it took it from
	// this pool with assign_port; the kernel owns it from now on).
	mappedSSHD, mapped := req.sshdHostPort()
	for _, sp := range img.servicePorts {
		entry := scratch.ServicePort{Name: sp.Name, Protocol: sp.Protocol, ContainerPorts: sp.Ports, IsInference: sp.IsInference}
		for _, cp := range sp.Ports {
			var p int
			switch {
			case sp.Name == protocol.SSHDService && mapped && len(sp.Ports) == 1:
				p = mappedSSHD
				if !m.cfg.Ports.Reserve(p) {
					rec.UnpooledPorts = append(rec.UnpooledPorts, p)
				} else if !slices.Contains(held, p) {
					undo.push(func(context.Context) error { return m.cfg.Ports.Release(p) })
				}
			case rec.NetworkMode == NetworkModeHost && sp.Name != protocol.SSHDService:
				// On the host's network a service listens on its own
				// port; only the runner's sockets and sshd are moved.
				p = cp
				rec.UnpooledPorts = append(rec.UnpooledPorts, p)
			default:
				if p, err = assign(); err != nil {
					return launched{}, err
				}
			}
			entry.HostPorts = append(entry.HostPorts, p)
		}
		rec.ServicePorts = append(rec.ServicePorts, entry)
	}
	if rec.NetworkMode == NetworkModeHost {
		if err := writeIntrinsicPorts(dirs, rec); err != nil {
			return launched{}, err
		}
	} else if err := os.Remove(filepath.Join(dirs.Config, IntrinsicPortsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return launched{}, fmt.Errorf("%s: %w", IntrinsicPortsFile, err)
	}

	mounts := []scratch.Mount{
		{Source: dirs.Config, Target: "/home/config", ReadOnly: true},
		{Source: dirs.Work, Target: "/home/work"},
		{Source: m.cfg.RunnerPath, Target: RunnerMountPath, ReadOnly: true},
	}
	if m.scratch.Kind == scratch.Memory {
		// As upstream's memory scratch: /tmp is a tmpfs of its own.
		mounts = append(mounts, scratch.Mount{Source: dirs.Tmp, Target: "/tmp"})
	}
	for _, pm := range merged.Mounts {
		mounts = append(mounts, scratch.Mount{Source: pm.Source, Target: pm.Target, ReadOnly: pm.ReadOnly})
	}
	for _, h := range merged.Hooks {
		mounts = append(mounts, scratch.Mount{Source: h.Source, Target: h.Target, ReadOnly: true})
	}
	mounts = append(mounts, timeMounts(pathExists)...)
	mounts = append(mounts, req.Mounts...)

	env := map[string]string{}
	for k, v := range req.Env {
		env[k] = v
	}
	for k, v := range merged.Env {
		env[k] = v
	}
	defaults := map[string]string{
		"BACKENDAI_KERNEL_ID": req.KernelID, "BACKENDAI_SESSION_ID": req.SessionID,
		"HOME": "/home/work",
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}
	for k, v := range defaults {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	if req.ModelDefinition != nil {
		modelEnv(env, *req.ModelDefinition)
	}
	injectAgentEnv(env, img.labels, allocation, merged.Attached)
	userEnv(env, m.userOf(req, img.labels), merged.GroupAdd)
	if preload := merged.preload(); preload != "" {
		// The hooks come after whatever the session asked to preload.
		if cur := env["LD_PRELOAD"]; cur != "" {
			preload = cur + ":" + preload
		}
		env["LD_PRELOAD"] = preload
	}

	bytesSlots := m.bytesSlots()
	spec := scratch.ResourceSpec{
		ScratchSizeBytes: m.cfg.ScratchSize, Mounts: mounts, Slots: req.ResourceSlots,
		Allocation: toScratchAllocation(allocation), BytesSlots: bytesSlots, PluginData: merged.ResourceData,
	}
	if err := scratch.WriteResourceFile(dirs, spec); err != nil {
		return launched{}, err
	}
	if err := scratch.WriteEnviron(dirs, env); err != nil {
		return launched{}, err
	}
	if err := writeCreationRequest(dirs, req); err != nil {
		return launched{}, err
	}
	if err := scratch.WriteRecovery(dirs, rec); err != nil {
		return launched{}, err
	}

	cfg, hostCfg, netCfg := m.containerConfig(req, rec, img.servicePorts, env, mounts, merged)
	if cfg, hostCfg, netCfg, err = m.withContainerOpts(ctx, cfg, hostCfg, netCfg); err != nil {
		return launched{}, err
	}
	containerID, err := engine.ContainerCreate(ctx, ContainerSpec{
		Config: cfg, HostConfig: hostCfg, Networking: netCfg, Name: ContainerName(req.Image, req.KernelID),
	})
	if err != nil {
		if req.Network != "" {
			return launched{}, fmt.Errorf("docker create (network %s): %w", req.Network, err)
		}
		return launched{}, fmt.Errorf("docker create: %w", err)
	}
	undo.push(func(ctx context.Context) error {
		err := engine.ContainerRemove(ctx, containerID)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove container %s: %w", containerID, err)
		}
		return nil
	})
	if err := scratch.AppendContainerID(dirs, containerID); err != nil {
		return launched{}, err
	}
	for _, n := range merged.Networks {
		// As upstream, after the container's own network: a plugin's
		// network (an RDMA or storage fabric, say) is an extra interface.
		if err := engine.NetworkConnect(ctx, n.Name, containerID); err != nil {
			return launched{}, fmt.Errorf("plugin %s: connect to docker network %s: %w", n.Plugin, n.Name, err)
		}
	}
	if err := engine.ContainerStart(ctx, containerID); err != nil {
		return launched{}, fmt.Errorf("docker start: %w", err)
	}
	if req.SudoSession {
		if err := m.provisionSudo(ctx, containerID); err != nil {
			return launched{}, afterStartError{err}
		}
	}

	rc, err := m.connectRunner(ctx, containerID, rec)
	if err != nil {
		return launched{}, afterStartError{err}
	}
	undo.push(func(context.Context) error { return rc.Close() })
	if err := m.mergeApps(ctx, rc, dirs, &rec); err != nil {
		return launched{}, afterStartError{err}
	}
	return launched{containerID: containerID, recovery: rec, runner: rc, attached: merged.Attached}, nil
}

// mergeApps adds what the runner's get-apps reports (url_template,
// allowed_arguments, allowed_envs) to the service ports of the same name,
// keeping the label's protocol, as upstream's create_kernel does once the
// runner answers; the recovery file keeps them for list_kernels and an
// agent restart.
func (m *Manager) mergeApps(ctx context.Context, rc *runnerclient.Client, dirs scratch.Dirs, rec *scratch.Recovery) error {
	actx, cancel := context.WithTimeout(ctx, m.cfg.RunnerStartTimeout)
	defer cancel()
	apps, err := rc.GetApps(actx)
	if err != nil {
		return fmt.Errorf("kernel runner get-apps: %w", err)
	}
	if apps.Status == "failed" {
		return errors.New("kernel runner get-apps failed")
	}
	if !mergeAppsInto(rec.ServicePorts, apps.Data) {
		return nil
	}
	return scratch.WriteRecovery(dirs, *rec)
}

// mergeAppsInto updates ports in place from apps and says whether any
// port changed.
func mergeAppsInto(ports []scratch.ServicePort, apps []protocol.App) bool {
	changed := false
	for _, app := range apps {
		for i := range ports {
			if ports[i].Name != app.Name {
				continue
			}
			ports[i].URLTemplate = app.URLTemplate
			ports[i].AllowedArguments = slices.Clone(app.AllowedArguments)
			ports[i].AllowedEnvs = slices.Clone(app.AllowedEnvs)
			changed = true
			break
		}
	}
	return changed
}

// connectRunner dials the runner and polls its status until it answers,
// failing early if the container stopped.
func (m *Manager) connectRunner(ctx context.Context, containerID string, rec scratch.Recovery) (*runnerclient.Client, error) {
	rc, err := m.dialRunner(rec.ReplInPort, rec.ReplOutPort)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, m.cfg.RunnerStartTimeout)
	defer cancel()
	statusErr := make(chan error, 1)
	go func() {
		_, err := rc.Status(wctx)
		statusErr <- err
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-statusErr:
			if err == nil {
				return rc, nil
			}
			_ = rc.Close()
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w (%s): %w", ErrRunnerTimeout, m.cfg.RunnerStartTimeout, err)
			}
			return nil, fmt.Errorf("kernel runner: %w%s", err, m.containerTail(containerID))
		case <-tick.C:
			insp, err := m.cfg.Engine.ContainerInspect(ctx, containerID)
			if err == nil && insp.State != nil && !insp.State.Running {
				cancel()
				<-statusErr
				_ = rc.Close()
				return nil, fmt.Errorf("container exited with code %d before its runner answered%s",
					insp.State.ExitCode, m.containerTail(containerID))
			}
		}
	}
}

// containerTail is the end of the container's log, for error messages.
func (m *Manager) containerTail(containerID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	logs, err := m.Logs(ctx, containerID, 20)
	if err != nil || strings.TrimSpace(logs) == "" {
		return ""
	}
	return "; container log: " + strings.TrimSpace(logs)
}

// setField changes a kernel under creation: reconciliation reads the
// registry's kernels concurrently.
func (m *Manager) setField(set func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set()
}

func net127(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// prepareContainer asks each plugin with a share of the allocation for its
// container settings and merges them.
func (m *Manager) prepareContainer(ctx context.Context, kernelID string, dirs scratch.Dirs, allocation alloc.Allocation) (mergedSpec, error) {
	var specs []pluginSpec
	for _, rp := range m.cfg.Plugins.Running() {
		share := sdk.Allocation{}
		var kinds []string
		deviceKinds := map[string]string{}
		for _, kind := range rp.Description.Kinds {
			used := false
			for slot, per := range allocation[kind.Key] {
				if len(per) > 0 {
					share[slot] = per
					used = true
				}
				for dev := range per {
					if _, seen := deviceKinds[dev]; !seen { // an id two kinds share goes to the first
						deviceKinds[dev] = kind.Key
					}
				}
			}
			if used {
				kinds = append(kinds, kind.Key)
			}
		}
		if len(share) == 0 {
			continue
		}
		plugin, _, ok := m.cfg.Plugins.Plugin(rp.Name)
		if !ok {
			return mergedSpec{}, fmt.Errorf("plugin %s stopped during kernel creation", rp.Name)
		}
		configDir := filepath.Join(dirs.Config, rp.Name)
		if err := os.MkdirAll(configDir, 0o755); err != nil {
			return mergedSpec{}, fmt.Errorf("plugin %s config dir: %w", rp.Name, err)
		}
		spec, err := plugin.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: share, ConfigDir: configDir, KernelID: kernelID})
		if err != nil {
			return mergedSpec{}, fmt.Errorf("plugin %s: %w", rp.Name, err)
		}
		specs = append(specs, pluginSpec{Plugin: rp.Name, Spec: spec, Kinds: kinds, DeviceKinds: deviceKinds})
	}
	merged, err := mergeSpecs(specs)
	if err != nil {
		return mergedSpec{}, err
	}
	for _, h := range merged.Hooks {
		// Docker would refuse the bind mount too, without naming the plugin.
		if st, err := os.Stat(h.Source); err != nil || !st.Mode().IsRegular() {
			return mergedSpec{}, fmt.Errorf("plugin %s: hook %s: %w", h.Plugin, h.Source, errors.Join(err, errIf(err == nil, "not a regular file")))
		}
	}
	return merged, nil
}

func (m *Manager) bytesSlots() map[string]bool {
	out := map[string]bool{}
	for _, rp := range m.cfg.Plugins.Running() {
		for _, kind := range rp.Description.Kinds {
			for _, st := range kind.SlotTypes {
				if st.Kind == sdk.SlotBytes {
					out[st.Name] = true
				}
			}
		}
	}
	return out
}

func toScratchAllocation(a alloc.Allocation) map[string]map[string]map[string]decimal.Decimal {
	out := make(map[string]map[string]map[string]decimal.Decimal, len(a))
	for kind, da := range a {
		out[kind] = map[string]map[string]decimal.Decimal(da)
	}
	return out
}

// imageServicePorts leaves out the intrinsic sshd: the container's
// label is the image's service ports plus the preopen ones, as upstream
// writes it (agent/docker/agent.py), and an image committed from the
// container inherits it, where the intrinsic ports would be refused.
func imageServicePorts(ports []ServicePort) []ServicePort {
	out := make([]ServicePort, 0, len(ports))
	for _, sp := range ports {
		if sp.Name != protocol.SSHDService {
			out = append(out, sp)
		}
	}
	return out
}

func (m *Manager) containerConfig(req CreateRequest, rec scratch.Recovery, servicePorts []ServicePort,
	env map[string]string, mounts []scratch.Mount, merged mergedSpec) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	labels := map[string]string{
		LabelAgentID: m.cfg.AgentID, LabelKernelID: req.KernelID, LabelSessionID: req.SessionID,
		LabelOwner: m.cfg.AgentID, LabelOwnerUserID: req.OwnerUserID, LabelOwnerProjectID: req.OwnerProjectID,
		LabelServicePorts: FormatServicePorts(imageServicePorts(servicePorts)), LabelScratchRoot: m.cfg.ScratchRoot,
		LabelBlockServicePorts: "0",
	}
	if req.BlockServicePorts {
		labels[LabelBlockServicePorts] = "1"
	}
	if req.ClusterRole != "" {
		labels[LabelClusterRole] = req.ClusterRole
		labels[LabelClusterIdx] = strconv.Itoa(req.ClusterIdx)
		labels[LabelClusterHost] = req.ClusterHostname
	}
	envList := make([]string, 0, len(env))
	for _, k := range sortedKeys(env) {
		envList = append(envList, k+"="+env[k])
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	bind := netip.IPv4Unspecified()
	if m.cfg.BindHost != "" {
		if a, err := netip.ParseAddr(m.cfg.BindHost); err == nil {
			bind = a
		}
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	publish := func(containerPort, hostPort int, addr netip.Addr) {
		p := network.MustParsePort(strconv.Itoa(containerPort) + "/tcp")
		exposed[p] = struct{}{}
		bindings[p] = append(bindings[p], network.PortBinding{HostIP: addr, HostPort: strconv.Itoa(hostPort)})
	}
	publish(protocol.InputPort, rec.ReplInPort, loopback)
	publish(protocol.OutputPort, rec.ReplOutPort, loopback)
	for _, sp := range rec.ServicePorts {
		for i, cp := range sp.ContainerPorts {
			publish(cp, sp.HostPorts[i], bind)
		}
	}
	var dockerMounts []mount.Mount
	for _, mt := range mounts {
		dockerMounts = append(dockerMounts, mount.Mount{Type: mount.TypeBind, Source: mt.Source, Target: mt.Target, ReadOnly: mt.ReadOnly})
	}
	cmd := []string{}
	if rec.RuntimeType != "" || rec.RuntimePath != "" {
		cmd = []string{rec.RuntimeType, rec.RuntimePath}
	}
	init := true
	cfg := &container.Config{
		Image: req.Image,
		// The runner starts as root, as upstream's entrypoint: it makes
		// the kernel user (LOCAL_USER_ID...) and runs every child as it.
		User:         "0:0",
		Env:          envList,
		Entrypoint:   []string{RunnerMountPath},
		Cmd:          cmd,
		WorkingDir:   "/home/work",
		Labels:       labels,
		ExposedPorts: exposed,
		StopSignal:   "SIGINT",
		Hostname:     req.ClusterHostname,
		// As upstream's kernels (agent/docker/agent.py): a terminal on the
		// main process, and its stdin kept open.
		Tty:       true,
		OpenStdin: true,
	}
	hostCfg := &container.HostConfig{
		Init:         &init,
		CapAdd:       []string{"IPC_LOCK", "SYS_NICE"},
		PortBindings: bindings,
		Mounts:       dockerMounts,
		GroupAdd:     slices.Clone(merged.GroupAdd),
		Runtime:      merged.Runtime,
		LogConfig:    kernelLogConfig(m.cfg.ContainerLogMaxLength),
		ShmSize:      req.ShmSize,
		Resources: container.Resources{
			CpusetCpus:     merged.CpusetCpus,
			Memory:         merged.MemoryBytes,
			MemorySwap:     merged.MemorySwap,
			Devices:        merged.Devices,
			DeviceRequests: merged.DeviceRequests,
			Ulimits:        kernelUlimits(),
		},
	}
	if merged.SeccompProfile != "" {
		hostCfg.SecurityOpt = []string{"seccomp=" + merged.SeccompProfile}
	}
	var netCfg *network.NetworkingConfig
	if rec.NetworkMode == NetworkModeHost {
		// The runner binds the host ports itself (intrinsic-ports.json);
		// the session's kernels are found through ExtraHosts.
		hostCfg.NetworkMode = container.NetworkMode(network.NetworkHost)
		hostCfg.ExtraHosts = extraHosts(req.ClusterHosts)
		cfg.ExposedPorts, hostCfg.PortBindings = nil, nil
	}
	if req.Network != "" {
		// As upstream's apply_network in bridge mode: the session network
		// replaces the default bridge; siblings find the kernel by its
		// cluster hostname.
		hostCfg.NetworkMode = container.NetworkMode(req.Network)
		endpoint := &network.EndpointSettings{}
		if req.ClusterHostname != "" {
			endpoint.Aliases = []string{req.ClusterHostname}
		}
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{req.Network: endpoint}}
	}
	return cfg, hostCfg, netCfg
}

// CreationRequestFile is config/kconfig.json: the kernel's CreateRequest,
// which restart_kernel starts from (upstream keeps kconfig.dat for the
// same purpose).
const CreationRequestFile = "kconfig.json"

// maxCreationRequestFile bounds what is read back; a real file is a few KiB.
const maxCreationRequestFile = 4 << 20

func writeCreationRequest(dirs scratch.Dirs, req CreateRequest) error {
	raw, err := json.MarshalIndent(req, "", "  ")
	if err != nil {
		return fmt.Errorf("creation request: %w", err)
	}
	return atomicfile.Write(filepath.Join(dirs.Config, CreationRequestFile), append(raw, '\n'), 0o644)
}

func readCreationRequest(dirs scratch.Dirs) (CreateRequest, error) {
	path := filepath.Join(dirs.Config, CreationRequestFile)
	f, err := os.Open(path)
	if err != nil {
		return CreateRequest{}, fmt.Errorf("the kernel's creation request: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxCreationRequestFile+1)); err != nil {
		return CreateRequest{}, fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > maxCreationRequestFile {
		return CreateRequest{}, fmt.Errorf("%s exceeds %d bytes", path, maxCreationRequestFile)
	}
	var req CreateRequest
	if err := json.Unmarshal(buf.Bytes(), &req); err != nil {
		return CreateRequest{}, fmt.Errorf("%s: %w", path, err)
	}
	return req, nil
}
