// Package agent runs the agent daemon: it wires the configuration, the
// plugin host and the local admin endpoint together and keeps them running
// until it is told to stop.
package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/containerlog"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/heartbeat"
	"github.com/baiagent/baiagent/host/internal/httpapi"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/presence"
	"github.com/baiagent/baiagent/host/internal/pywire"
	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/resources"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/host/internal/stats"
	"github.com/baiagent/baiagent/host/internal/version"
	"github.com/baiagent/baiagent/proto/sdk"
)

// PluginOptions turns the configuration into plugin host options.
func PluginOptions(cfg *config.Config, log zerolog.Logger) pluginhost.Options {
	return pluginhost.Options{
		Dirs: cfg.Agent.PluginDirs,
		Policy: pluginhost.Policy{
			Allow: cfg.Agent.AllowComputePlugins,
			Block: cfg.Agent.BlockComputePlugins,
		},
		Checksums:    cfg.Agent.PluginChecksums,
		StartTimeout: cfg.Agent.PluginStartTimeout,
		RuntimeDir:   cfg.Agent.PluginRuntimeDir,
		WorkDir:      cfg.Dir(),
		PluginConfig: cfg.Plugins,
		Agent:        sdk.AgentInfo{AgentID: cfg.Agent.ID},
		Logger:       log,
	}
}

// Agent is one running agent.
type Agent struct {
	cfg     *config.Config
	log     zerolog.Logger
	plugins *pluginhost.Host
	admin   *adminapi.Server

	allocator *alloc.Allocator
	reported  map[string]decimal.Decimal
	bus       *events.Bus
	docker    *client.Client
	// subnetBindHost is this host's address in etcd's
	// config/network/subnet/container, when container.bind-host is empty.
	subnetBindHost string
	// containerLogs stores finished kernels' logs for the manager; nil
	// without Redis.
	containerLogs *containerlog.Collector
}

// heartbeatInfo is what every heartbeat reports.
func (a *Agent) heartbeatInfo(publicKey string) heartbeat.Info {
	rpcAddr := a.cfg.Agent.RPCListenAddr
	if a.cfg.Agent.AdvertisedRPCAddr != nil {
		rpcAddr = *a.cfg.Agent.AdvertisedRPCAddr
	}
	if rpcAddr.Host == "" || rpcAddr.Host == "0.0.0.0" {
		rpcAddr.Host = a.nodeAddress().IP
	}
	info := heartbeat.Info{
		IP:                         a.nodeAddress().IP,
		Region:                     a.cfg.Agent.Region,
		ScalingGroup:               a.cfg.Agent.InitialResourceGroupName,
		RPCAddr:                    rpcAddr.String(),
		PublicHost:                 a.publicHost(),
		Version:                    version.Version,
		Architecture:               machineArch(),
		AutoTerminateAbusingKernel: a.cfg.Agent.ForceTerminateAbusingContainers,
	}
	if publicKey != "" {
		info.PublicKey = []byte(publicKey)
	}
	units := map[string]string{}
	for _, p := range a.plugins.Running() {
		for _, kind := range p.Description.Kinds {
			for _, st := range kind.SlotTypes {
				units[st.Name] = st.Kind.String()
			}
			extra := pywire.Map{}
			for _, k := range slices.Sorted(maps.Keys(p.Description.ExtraInfo)) {
				extra = append(extra, pywire.KV{Key: k, Value: p.Description.ExtraInfo[k]})
			}
			info.ComputePlugins = append(info.ComputePlugins, heartbeat.ComputePlugin{Key: kind.Key, Version: p.Description.Version, Extra: extra})
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(a.reported)) {
		info.Slots = append(info.Slots, heartbeat.Slot{Name: slot, Unit: units[slot], Available: a.reported[slot]})
	}
	return info
}

// startStats writes node and kernel statistics to Redis as upstream does
// (DB 0: {agent_id}, {kernel_id}, and container_count.{agent_id} every
// 10 s even when statistics are disabled).
func (a *Agent) startStats(ctx context.Context, db *redis.Client, kernels *kernel.Manager, metrics *httpapi.Metrics) error {
	um := a.cfg.Agent.UtilizationMetric
	collector, err := stats.New(stats.Options{
		AgentID: a.cfg.Agent.ID, Redis: db, Plugins: a.plugins,
		Containers: newContainerTargets(a.docker, kernels).list,
		// Counting needs no docker inspect, unlike Containers.
		ContainerCount: func(context.Context) (int, error) {
			n := 0
			for _, k := range kernels.List() {
				if k.ContainerID != "" {
					n++
				}
			}
			return n, nil
		},
		NodeInterval: um.Node.Interval, ContainerInterval: um.Container.Interval,
		DisableNode: !um.Node.Enable, DisableContainer: !um.Container.Enable,
		Logger: a.log.With().Str("component", "stats").Logger(),
		OnNodeMetrics: func(plugin string, m []sdk.Metric) {
			metrics.SetPluginNodeMetrics(a.cfg.Agent.ID, plugin, m)
		},
	})
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	go collector.Run(ctx)
	return nil
}

// startPresence marks the running kernels in DB 2 every minute, so that
// the manager's check_stale_kernels sees them alive. The returned func
// stops the reporter and waits for it.
func (a *Agent) startPresence(ctx context.Context, db *redis.Client, kernels *kernel.Manager) (func(), error) {
	reporter, err := presence.New(presence.Options{
		Redis: db,
		Kernels: func(context.Context) ([]string, error) {
			var ids []string
			for _, k := range kernels.List() {
				if k.State == "running" && k.ContainerID != "" {
					ids = append(ids, k.KernelID)
				}
			}
			return ids, nil
		},
		Logger: a.log.With().Str("component", "presence").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("kernel presence: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reporter.Run(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

// refreshMetrics keeps the gauges of /metrics current: kernels by state,
// allocations by slot, plugin states and restarts, event queue depth.
func (a *Agent) refreshMetrics(ctx context.Context, m *httpapi.Metrics, kernels *kernel.Manager) {
	restarts := map[string]int{}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		counts := map[string]int{}
		for _, k := range kernels.List() {
			counts[k.State]++
		}
		m.SetKernelCounts(counts)
		for _, u := range a.allocator.Snapshot() {
			allocated, _ := u.Allocated.Float64()
			capacity, _ := u.Capacity.Float64()
			m.SetSlot(u.Slot, allocated, capacity)
		}
		for _, s := range a.plugins.Statuses() {
			m.SetPluginState(s.Name, string(s.State))
			for ; restarts[s.Name] < s.Restarts; restarts[s.Name]++ {
				m.IncPluginRestart(s.Name)
			}
		}
		m.SetEventQueueDepth(a.bus.QueueDepth())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// heartbeatImages rescans the local kernel images for the heartbeat and
// tells the manager about the ones gone since the last scan with
// agent_installed_images_remove, as upstream's periodic scan_images does.
// When Docker fails, the last scan's list is reported again.
func (a *Agent) heartbeatImages(ctx context.Context, svc *images.Service) []heartbeat.Image {
	current, removed, err := svc.Rescan(ctx)
	if err != nil {
		a.log.Warn().Err(err).Msg("cannot scan the local images; the heartbeat reports the last scan")
	}
	if len(removed) > 0 {
		ev := events.AgentInstalledImagesRemove{}
		for _, img := range removed {
			ev.Images = append(ev.Images, events.ScannedImage{Canonical: img.Canonical, Digest: img.Digest})
		}
		a.emit(ctx, ev)
	}
	out := make([]heartbeat.Image, len(current))
	for i, img := range current {
		out[i] = heartbeat.Image(img)
	}
	return out
}

// machineArch is upstream's architecture name of this machine.
func machineArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	default:
		return runtime.GOARCH
	}
}

// buildAllocator makes the alloc maps from the running plugins' devices and
// computes the slots reported to the manager.
func (a *Agent) buildAllocator() error {
	var plugins []resources.Plugin
	for _, p := range a.plugins.Running() {
		plugins = append(plugins, resources.Plugin{Description: p.Description, Devices: p.Devices})
	}
	specs, err := resources.MapSpecs(plugins)
	if err != nil {
		return err
	}
	allocator, added, err := resources.NewAllocator(a.cfg.Resource, specs)
	if err != nil {
		return fmt.Errorf("build allocation maps: %w", err)
	}
	if len(added) > 0 {
		a.log.Warn().Strs("kinds", added).Msg("resource kinds missing from resource.allocation-order are allocated before cpu and mem")
	}
	reported, err := resources.ReportedSlots(a.cfg.Resource, allocator)
	if err != nil {
		return fmt.Errorf("compute available slots: %w", err)
	}
	a.allocator, a.reported = allocator, reported
	ev := a.log.Info()
	for slot, amount := range reported {
		ev = ev.Str(slot, amount.String())
	}
	ev.Msg("available resource slots")
	return nil
}

// newKernels connects to Docker and prepares the kernel manager.
// With logDB (Redis DB 6), finished kernels' logs are stored for the manager.
func (a *Agent) newKernels(ctx context.Context, ports *portpool.Pool, logDB *redis.Client, suppressed func(kernelID string) bool) (*kernel.Manager, error) {
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, fmt.Errorf("cannot reach the Docker engine (backend = docker): %w", err)
	}
	a.docker = docker
	runner := a.cfg.Agent.KernelRunnerPath
	if runner == "" {
		if runner, err = kernel.DefaultRunnerPath(); err != nil {
			return nil, err
		}
	}
	log := a.log.With().Str("component", "kernels").Logger()
	if logDB != nil {
		a.containerLogs = containerlog.New(containerlog.Options{Docker: docker, Redis: logDB, Bus: a.bus,
			ChunkSize: int(a.cfg.ContainerLogs.ChunkSize), Logger: log})
	}
	m, err := kernel.New(kernel.Config{
		AgentID:             a.cfg.Agent.ID,
		ScratchRoot:         a.cfg.Container.ScratchRoot,
		KernelUID:           a.cfg.Container.KernelUID,
		KernelGID:           a.cfg.Container.KernelGID,
		BindHost:            a.cfg.Container.BindHost,
		RunnerPath:          runner,
		CreationConcurrency: a.cfg.Agent.KernelCreationConcurrency,
		ScratchSize:         int64(a.cfg.Container.ScratchSize),
		MemoryScratch:       a.cfg.Container.ScratchType == config.ScratchMemory,
		CommitPath:          a.cfg.Agent.ImageCommitPath,
		// [container-logs] max-length: Docker's log rotation keeps about
		// that much of each kernel's output (upstream's defaults).
		ContainerLogMaxLength: int64(a.cfg.ContainerLogs.MaxLength),
		// agent.sync-container-lifecycles; an interval of 0 keeps the 10 s default.
		ReconcileInterval:   a.cfg.Agent.SyncContainerLifecycles.Interval,
		NoPeriodicReconcile: !a.cfg.Agent.SyncContainerLifecycles.Enabled,
		KeepContainers:      a.cfg.Debug.SkipContainerDeletion,
		OnTerminated: func(t kernel.Termination) {
			log.Info().Str("kernel_id", t.KernelID).Str("reason", t.Reason).Int("exit_code", t.ExitCode).Msg("kernel terminated")
			if suppressed(t.KernelID) {
				return
			}
			ev := events.KernelTerminated{KernelID: t.KernelID, SessionID: t.SessionID,
				Reason: t.Reason, ReasonVerbatim: t.ReasonVerbatim, ExitCode: t.ExitCode}
			if err := a.bus.Emit(context.WithoutCancel(ctx), ev); err != nil {
				log.Error().Err(err).Str("kernel_id", t.KernelID).Msg("kernel_terminated event not sent")
			}
		},
		BeforeRemove: func(ctx context.Context, kernelID, containerID string) {
			if a.containerLogs == nil {
				return
			}
			// Upstream logs the failure and cleans up anyway.
			if err := a.containerLogs.Collect(ctx, kernelID, containerID); err != nil {
				log.Warn().Err(err).Str("kernel_id", kernelID).Msg("container log not stored for the manager")
			}
		},
		Docker:    docker,
		Allocator: a.allocator,
		Plugins:   a.plugins,
		Ports:     ports,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// runKernels takes back the kernels a previous agent left running
// (allocations, ports, runners) and follows Docker's events.
func (a *Agent) runKernels(ctx context.Context, m *kernel.Manager) {
	log := a.log.With().Str("component", "kernels").Logger()
	report, err := m.Recover(ctx)
	if err != nil {
		log.Error().Err(err).Msg("kernel recovery was incomplete")
	}
	log.Info().Interface("recovery", report).Int("running", len(m.List())).Msg("kernels recovered from Docker")
	go func() {
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("kernel lifecycle loop stopped")
		}
	}()
}

// Resources reports the slots and their use, for the admin API.
func (a *Agent) Resources() adminapi.Resources {
	return adminapi.Resources{Reported: a.reported, Usage: a.allocator.Snapshot()}
}

// New prepares an agent; Run starts it.
func New(cfg *config.Config, log zerolog.Logger) *Agent {
	return &Agent{cfg: cfg, log: log}
}

// Run starts every part and blocks until ctx ends, then stops them in
// reverse order. Kernels (containers) are never stopped by a shutdown.
func (a *Agent) Run(ctx context.Context) error {
	started := time.Now()
	etcd, overlay, closeEtcd, err := a.connectEtcd(ctx)
	if err != nil {
		return err
	}
	defer closeEtcd()
	a.detectBindHost(overlay)
	redisProfile, err := a.redisProfile(overlay)
	if err != nil {
		return err
	}
	var stream *events.RedisOptions
	if redisProfile != nil {
		target := redisProfile.For(redisconn.RoleStream)
		stream = &target
	}
	bus, err := events.New(ctx, events.Options{
		AgentID:  a.cfg.Agent.ID,
		Redis:    stream,
		Encoding: events.EncodingArgs,
		QueueDir: filepath.Join(a.cfg.Agent.VarBasePath, "event-queue"),
		Logger:   a.log.With().Str("component", "events").Logger(),
	})
	if err != nil {
		return fmt.Errorf("event bus: %w", err)
	}
	defer bus.Close()
	a.bus = bus
	if err := etcd.SetStatus(ctx, etcdstore.AgentStarting); err != nil {
		return fmt.Errorf("register in etcd: %w", err)
	}
	metrics := httpapi.NewMetrics()
	web, err := httpapi.Listen(httpapi.Options{
		Addr: a.cfg.Agent.InternalAddr.String(), Version: version.Version, Log: a.log,
		TLSCertFile: tlsFile(a.cfg.Agent.SSLEnabled, a.cfg.Agent.SSLCert), TLSKeyFile: tlsFile(a.cfg.Agent.SSLEnabled, a.cfg.Agent.SSLKey),
		Routes: map[string]http.Handler{"GET /v1/events": bus.Handler()},
		Pprof:  a.cfg.Debug.Enabled,
	}, metrics)
	if err != nil {
		return fmt.Errorf("internal HTTP endpoint: %w", err)
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = web.Shutdown(shutdownCtx)
	}()
	web.AddReadinessCheck("etcd", "etcd", etcd.Ping)

	a.plugins = pluginhost.New(PluginOptions(a.cfg, a.log))
	if err := a.plugins.Start(ctx); err != nil {
		return fmt.Errorf("start plugin host: %w", err)
	}
	defer a.plugins.Stop()
	for _, s := range a.plugins.Statuses() {
		ev := a.log.Info()
		if s.State != pluginhost.StateRunning {
			ev = a.log.Warn()
		}
		ev.Str("plugin", s.Name).Str("state", string(s.State)).Str("reason", s.Reason).
			Strs("kinds", s.Keys).Int("devices", s.DeviceCount).Msg("compute plugin")
	}
	web.AddReadinessCheck("plugins", "agent", a.pluginsReady)
	if err := a.buildAllocator(); err != nil {
		return err
	}
	admin, err := adminapi.Listen(adminapi.SocketPath(a.cfg.Agent.IPCBasePath), a.plugins, a)
	if err != nil {
		return err
	}
	a.admin = admin
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = a.admin.Close(shutdownCtx)
	}()
	// One port pool serves the RPC's assign_port and the kernels' ports.
	ports, err := portpool.New(a.cfg.Container.PortRange.Min, a.cfg.Container.PortRange.Max, a.cfg.Container.PortReuseCooldown, nil)
	if err != nil {
		return fmt.Errorf("container.port-range: %w", err)
	}
	// A port another program holds would make Docker fail to publish it.
	ports.CheckWith(portpool.ListenProbe(probeHost(a.cfg.Container.BindHost)))
	var kernelMethods *rpcserver.KernelMethods
	var logDB *redis.Client
	if redisProfile != nil {
		logDB = redisProfile.Client(redisconn.RoleContainerLog)
		defer logDB.Close()
	}
	kernels, err := a.newKernels(ctx, ports, logDB, func(kernelID string) bool {
		// suppress_events=True, or a destroy started by sync_kernel_registry.
		return kernelMethods.TakeSuppressed(kernelID)
	})
	if err != nil {
		return err
	}
	defer kernels.Close()
	imageService := images.New(a.docker, images.Options{
		PullTimeout: a.cfg.API.PullTimeout, PushTimeout: a.cfg.API.PushTimeout, KernelLabel: kernel.LabelKernelID,
		Logger: a.log.With().Str("component", "images").Logger(),
	})
	defer imageService.Close()
	kernelMethods = rpcserver.NewKernelMethods(kernels, rpcserver.KernelMethodsOptions{
		KernelHost: a.kernelHost(),
		Images:     imageService,
		Events:     bus,
		Logger:     a.log.With().Str("component", "kernel-rpc").Logger(),
		OnPreparing: func(ctx context.Context, kernelID, sessionID string) {
			a.emit(ctx, events.KernelPreparing{KernelID: kernelID, SessionID: sessionID})
		},
		OnPulling: func(ctx context.Context, kernelID, sessionID, image string) {
			a.emit(ctx, events.KernelPulling{KernelID: kernelID, SessionID: sessionID, Reason: image})
		},
		OnCreating: func(ctx context.Context, kernelID, sessionID string) {
			a.emit(ctx, events.KernelCreating{KernelID: kernelID, SessionID: sessionID})
		},
		OnStarted: func(ctx context.Context, kernelID, sessionID string, result map[string]any) {
			a.emit(ctx, events.KernelStarted{KernelID: kernelID, SessionID: sessionID, CreationInfo: orderedMap(result)})
		},
		OnAlreadyTerminated: func(ctx context.Context, kernelID, sessionID string) {
			ev := events.KernelTerminated{KernelID: kernelID, SessionID: sessionID, Reason: kernel.ReasonAlreadyTerminated, ExitCode: -1}
			if err := bus.Emit(context.WithoutCancel(ctx), ev); err != nil {
				a.log.Warn().Err(err).Msg("kernel_terminated event not sent")
			}
		},
	})
	// Its background destroys (sync_kernel_registry, exec-timeout, a
	// failed model service) finish, and model-service starts stop, before
	// the kernel manager closes.
	defer kernelMethods.Close()
	rpc, err := rpcserver.New(
		rpcserver.OptionsFromConfig(a.cfg, version.Version, a.log.With().Str("component", "rpc").Logger()),
		rpcserver.Deps{
			Kernels:  kernelMethods,
			Ports:    ports,
			Hardware: pluginHardware{plugins: a.plugins, timeout: 10 * time.Second},
			Observe:  metrics.ObserveRPC,
			// Upstream's @collect_error: every failed call is an agent_error event.
			AgentError: func(ctx context.Context, method string, err error) {
				ev := events.AgentError{Message: fmt.Sprintf("rpc %s: %v", method, err), Severity: "ERROR"}
				if emitErr := bus.Emit(context.WithoutCancel(ctx), ev); emitErr != nil {
					a.log.Warn().Err(emitErr).Msg("agent_error event not sent")
				}
			},
		},
	)
	if err != nil {
		return fmt.Errorf("start RPC server: %w", err)
	}
	rpcserver.RegisterKernelMethods(rpc, kernelMethods)
	imageMethods := rpcserver.NewImageMethods(imageService, rpcserver.ImageMethodsOptions{
		AgentID: a.cfg.Agent.ID, Events: bus, Logger: a.log.With().Str("component", "images").Logger(),
	})
	defer imageMethods.Close()
	rpcserver.RegisterImageMethods(rpc, imageMethods)
	kernelOps := rpcserver.NewKernelOps(kernels, rpcserver.KernelOpsOptions{Events: bus, Logger: a.log.With().Str("component", "kernel-ops").Logger()})
	defer kernelOps.Close()
	rpcserver.RegisterKernelOpsMethods(rpc, kernelOps)
	batches := rpcserver.NewBatches(kernelMethods, kernels, rpcserver.BatchOptions{
		Events: bus, Logger: a.log.With().Str("component", "batch").Logger(),
	})
	// The jobs stop before the kernel manager closes; the next agent
	// reports what they leave.
	defer batches.Close()
	rpcserver.RegisterBatchMethods(rpc, batches)
	a.runKernels(ctx, kernels)
	batches.Resume(kernels.List())
	rpcDone := make(chan error, 1)
	var rpcServing atomic.Bool
	rpcServing.Store(true)
	go func() {
		rpcDone <- rpc.Serve(ctx)
		rpcServing.Store(false)
	}()
	web.AddReadinessCheck("rpc", "agent", func(context.Context) error {
		if !rpcServing.Load() {
			return errors.New("the RPC server stopped")
		}
		return nil
	})
	if err := etcd.PublishNodeAddress(ctx, a.nodeAddress()); err != nil {
		return fmt.Errorf("register in etcd: %w", err)
	}
	if err := etcd.SetStatus(ctx, etcdstore.AgentRunning); err != nil {
		return fmt.Errorf("register in etcd: %w", err)
	}
	if err := bus.Emit(ctx, events.AgentStarted{Reason: events.ReasonSelfStarted}); err != nil {
		a.log.Warn().Err(err).Msg("agent_started event not sent")
	}
	defer func() {
		if err := bus.Emit(context.WithoutCancel(ctx), events.AgentTerminated{Reason: events.ReasonShutdown}); err != nil {
			a.log.Warn().Err(err).Msg("agent_terminated event not sent")
		}
	}()
	var images *redis.Client
	if redisProfile != nil {
		images = redisProfile.Client(redisconn.RoleImage)
		defer images.Close()
	}
	go a.refreshMetrics(ctx, metrics, kernels)
	if redisProfile != nil {
		statDB := redisProfile.Client(redisconn.RoleStatistics)
		defer statDB.Close()
		if err := a.startStats(ctx, statDB, kernels, metrics); err != nil {
			return err
		}
		go reportCommits(ctx, statDB, kernels.OngoingCommits, commitStatusInterval, commitStatusTTL, a.log)
		liveDB := redisProfile.Client(redisconn.RoleLive)
		defer liveDB.Close()
		stopPresence, err := a.startPresence(ctx, liveDB, kernels)
		if err != nil {
			return err
		}
		defer stopPresence()
	}
	go heartbeat.Run(ctx, heartbeat.Options{
		AgentID: a.cfg.Agent.ID,
		Source: heartbeat.SourceFunc(func(ctx context.Context) (heartbeat.Info, error) {
			info := a.heartbeatInfo(rpc.PublicKey())
			info.Images = a.heartbeatImages(ctx, imageService)
			return info, nil
		}),
		Bus:      bus,
		Interval: a.cfg.Debug.HeartbeatInterval,
		Images:   images,
		Logger:   a.log.With().Str("component", "heartbeat").Logger(),
	})
	a.log.Info().Str("agent_id", a.cfg.Agent.ID).Dur("startup", time.Since(started)).
		Str("rpc", rpc.Endpoint()).Bool("curve", rpc.PublicKey() != "").Str("http", web.Addr().String()).
		Str("admin_socket", adminapi.SocketPath(a.cfg.Agent.IPCBasePath)).Msg("agent started")
	select {
	case <-ctx.Done():
	case err := <-rpcDone:
		return fmt.Errorf("RPC server stopped: %w", err)
	}
	// Like upstream, the etcd status stays "running": the manager decides
	// when an agent is lost.
	a.log.Info().Msg("agent stopping; kernels keep running")
	if err := <-rpcDone; err != nil {
		a.log.Warn().Err(err).Msg("RPC server did not stop cleanly")
	}
	return nil
}

// connectEtcd starts the embedded etcd when configured, connects, waits for
// the manager unless told not to, and merges etcd's configuration over
// agent.toml's (plugin tables, container uid/gid).
func (a *Agent) connectEtcd(ctx context.Context) (*etcdstore.Client, *etcdstore.Overlay, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if a.cfg.Etcd.Embedded {
		if len(a.cfg.Etcd.Addrs) != 1 {
			return nil, nil, nil, fmt.Errorf("etcd.addr: an embedded etcd listens on exactly one address, got %d", len(a.cfg.Etcd.Addrs))
		}
		emb, err := etcdstore.StartEmbedded(ctx, a.cfg.Etcd.DataDir, a.cfg.Etcd.Addrs[0], a.log)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("embedded etcd: %w", err)
		}
		closers = append(closers, emb.Close)
		a.log.Info().Str("endpoint", emb.Endpoint()).Str("data_dir", a.cfg.Etcd.DataDir).Msg("embedded etcd started")
	}
	etcd, err := etcdstore.Connect(ctx, etcdstore.OptionsFromConfig(a.cfg, a.log))
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("connect to etcd: %w", err)
	}
	closers = append(closers, func() { _ = etcd.Close() })
	if !a.cfg.Agent.SkipManagerDetection {
		if err := etcd.WaitForManager(ctx, 0); err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("wait for the manager: %w", err)
		}
	}
	overlay, err := etcd.ReadOverlay(ctx)
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("read config from etcd: %w", err)
	}
	a.cfg.Plugins = etcdstore.MergePluginConfig(a.cfg.Plugins, overlay)
	overlay.ApplyContainer(&a.cfg.Container)
	return etcd, overlay, closeAll, nil
}

// nodeAddress is what the manager learns from etcd: the RPC host (the
// advertised one when set) and the watcher port.
func (a *Agent) nodeAddress() etcdstore.NodeAddress {
	addr := etcdstore.NodeAddressFromConfig(a.cfg)
	if addr.IP == "" || addr.IP == "0.0.0.0" {
		addr.IP = outboundIP()
	}
	return addr
}

// outboundIP is the host's address on its default route, which is what
// upstream auto-detects for an empty RPC host.
func outboundIP() string {
	conn, err := net.Dial("udp", "192.0.2.1:9") // no packet is sent
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}

// emit sends an event; a failure is logged, never returned: lifecycle
// events that cannot be sent now are queued by the bus.
func (a *Agent) emit(ctx context.Context, ev events.Event) {
	if err := a.bus.Emit(context.WithoutCancel(ctx), ev); err != nil {
		a.log.Warn().Err(err).Str("event", ev.Name()).Msg("event not sent")
	}
}

// orderedMap turns a result dict into msgpack's ordered map, keys sorted.
func orderedMap(m map[string]any) pywire.Map {
	out := make(pywire.Map, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if inner, ok := v.(map[string]any); ok {
			v = orderedMap(inner)
		}
		out = append(out, pywire.KV{Key: k, Value: v})
	}
	return out
}

// probeHost is where host ports are checked: the bind host, or all
// interfaces when Docker publishes on all of them.
func probeHost(bindHost string) string {
	if bindHost == "" {
		return "0.0.0.0"
	}
	return bindHost
}

// pluginsReady fails while any allowed plugin is not running.
func (a *Agent) pluginsReady(context.Context) error {
	var bad []string
	for _, s := range a.plugins.Statuses() {
		switch s.State {
		case pluginhost.StateRunning, pluginhost.StateBlocked, pluginhost.StateNotAllowed:
		default:
			bad = append(bad, s.Name+" is "+string(s.State))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

// tlsFile is path when agent.ssl-enabled, else "": cert and key paths left
// in the file while TLS is off are not loaded, as upstream.
func tlsFile(enabled bool, path string) string {
	if !enabled {
		return ""
	}
	return path
}
