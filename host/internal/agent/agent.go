// Package agent runs the agent daemon: it wires the configuration, the
// plugin host and the local admin endpoint together and keeps them running
// until it is told to stop.
package agent

import (
	"cmp"
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
	"golang.org/x/sync/errgroup"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/containerlog"
	"github.com/baiagent/baiagent/host/internal/etcdproc"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/heartbeat"
	"github.com/baiagent/baiagent/host/internal/httpapi"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/memtrim"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/presence"
	"github.com/baiagent/baiagent/host/internal/redisconn"
	"github.com/baiagent/baiagent/host/internal/resources"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/host/internal/session"
	"github.com/baiagent/baiagent/host/internal/stats"
	"github.com/baiagent/baiagent/host/internal/version"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
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
	// subnetBindHost is this host's address in etcd's
	// config/network/subnet/container, when container.bind-host is empty.
	subnetBindHost string
	// containerLogs stores finished kernels' logs for the manager; nil
	// without Redis.
	containerLogs *containerlog.Collector
	// trimmer gives the C heap back to the OS after kernels end.
	trimmer *memtrim.Trimmer
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
			extra := wiremsg.Dict{}
			for _, k := range slices.Sorted(maps.Keys(p.Description.ExtraInfo)) {
				extra = append(extra, wiremsg.KV{Key: k, Value: p.Description.ExtraInfo[k]})
			}
			info.ComputePlugins = append(info.ComputePlugins, heartbeat.ComputePlugin{Key: kind.Key, Version: p.Description.Version, Extra: extra})
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(a.reported)) {
		info.Slots = append(info.Slots, heartbeat.Slot{Name: slot, Unit: units[slot], Available: a.reported[slot]})
	}
	return info
}

// newStats makes the collector that writes node and kernel statistics to
// Redis as upstream does (DB 0: {agent_id}, {kernel_id}, and
// container_count.{agent_id} every 10 s even when statistics are disabled).
func (a *Agent) newStats(db *redis.Client, docker client.APIClient, kernels *kernel.Manager, metrics *httpapi.Metrics) (*stats.Collector, error) {
	um := a.cfg.Agent.UtilizationMetric
	collector, err := stats.New(stats.Options{
		AgentID: a.cfg.Agent.ID, Redis: db, Plugins: a.plugins,
		Containers: newContainerTargets(docker, kernels).list,
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
		return nil, fmt.Errorf("stats: %w", err)
	}
	return collector, nil
}

// newPresence makes the reporter that marks the running kernels in DB 2
// every minute, so that the manager's check_stale_kernels sees them alive.
func (a *Agent) newPresence(db *redis.Client, kernels *kernel.Manager) (*presence.Reporter, error) {
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
	return reporter, nil
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

// newKernels prepares the kernel manager on docker.
// With logDB (Redis DB 6), finished kernels' logs are stored for the manager.
func (a *Agent) newKernels(ctx context.Context, docker *client.Client, ports *portpool.Pool, logDB *redis.Client, suppressed *session.Suppressions) (*kernel.Manager, error) {
	var err error
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
		ScratchType:         scratch.Kind(a.cfg.Container.ScratchType),
		CommitPath:          a.cfg.Agent.ImageCommitPath,
		// [container-logs] max-length: Docker's log rotation keeps about
		// that much of each kernel's output (upstream's defaults).
		ContainerLogMaxLength: int64(a.cfg.ContainerLogs.MaxLength),
		// agent.sync-container-lifecycles; an interval of 0 keeps the 10 s default.
		ReconcileInterval:   a.cfg.Agent.SyncContainerLifecycles.Interval,
		NoPeriodicReconcile: !a.cfg.Agent.SyncContainerLifecycles.Enabled,
		KeepContainers:      a.cfg.Debug.SkipContainerDeletion,
		// A closed idle connection leaves its buffers in the C heap too.
		OnRunnerIdle: a.trimmer.Note,
		OnTerminated: func(t kernel.Termination) {
			log.Info().Str("kernel_id", t.KernelID).Str("reason", string(t.Reason)).Int("exit_code", t.ExitCode).Msg("kernel terminated")
			a.trimmer.Note()
			if suppressed.Take(t.KernelID) {
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
		Engine:    kernel.NewDockerEngine(docker),
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

// recoverKernels takes back the kernels a previous agent left running
// (allocations, ports, runners); runKernels then follows Docker's events.
func (a *Agent) recoverKernels(ctx context.Context, m *kernel.Manager) {
	log := a.log.With().Str("component", "kernels").Logger()
	report, err := m.Recover(ctx)
	if err != nil {
		log.Error().Err(err).Msg("kernel recovery was incomplete")
	}
	log.Info().Interface("recovery", report).Int("running", len(m.List())).Msg("kernels recovered from Docker")
}

// Resources reports the slots and their use, for the admin API.
func (a *Agent) Resources() adminapi.Resources {
	return adminapi.Resources{Reported: a.reported, Usage: a.allocator.Snapshot()}
}

// New prepares an agent; Run starts it.
func New(cfg *config.Config, log zerolog.Logger) *Agent {
	return &Agent{cfg: cfg, log: log, trimmer: memtrim.New(memtrim.DefaultDelay)}
}

// parts are what build makes and start sets running.
type parts struct {
	etcd    *etcdstore.Client
	bus     *events.Bus
	web     *httpapi.Server
	metrics *httpapi.Metrics
	kernels *kernel.Manager
	images  *images.Service
	batches *session.Batches
	rpc     *rpcserver.Server
	// With Redis only: the statistics, commit-status and presence writers
	// and the heartbeat's image DB; nil without Redis.
	stats    *stats.Collector
	statDB   *redis.Client
	presence *presence.Reporter
	imageDB  *redis.Client
}

// closers undoes build: each part's close, run in reverse order.
type closers []func()

func (c *closers) add(f func()) { *c = append(*c, f) }

// run has a pointer receiver so that a deferred run sees the closes
// added after the defer.
func (c *closers) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// Run builds every part, starts the agent's loops and blocks until ctx
// ends or a loop fails. It then cancels the loops, waits for all of them,
// and closes the parts in reverse order, on every path out, a failed
// start included. Kernels (containers) are never stopped by a shutdown.
func (a *Agent) Run(ctx context.Context) error {
	started := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var undo closers
	defer undo.run()
	p, err := a.build(ctx, &undo)
	if err != nil {
		return err
	}
	loops, loopCtx := errgroup.WithContext(ctx)
	if err = a.start(loopCtx, loops, p, &undo); err == nil {
		a.log.Info().Str("agent_id", a.cfg.Agent.ID).Dur("startup", time.Since(started)).
			Str("rpc", p.rpc.Endpoint()).Bool("curve", p.rpc.PublicKey() != "").Str("http", p.web.Addr().String()).
			Str("admin_socket", adminapi.SocketPath(a.cfg.Agent.IPCBasePath)).Msg("agent started")
		<-loopCtx.Done()
		// Like upstream, the etcd status stays "running": the manager
		// decides when an agent is lost.
		a.log.Info().Msg("agent stopping; kernels keep running")
	}
	// Every loop ends before the parts it uses close (undo, deferred).
	cancel()
	return errors.Join(err, loops.Wait())
}

// build makes every part, each one's close added to undo, and starts
// nothing that outlives it but the parts' own servers (HTTP, admin
// socket, plugins, event bus), which their closes stop.
func (a *Agent) build(ctx context.Context, undo *closers) (*parts, error) {
	p := &parts{}
	etcd, overlay, closeEtcd, err := a.connectEtcd(ctx)
	if err != nil {
		return nil, err
	}
	undo.add(closeEtcd)
	p.etcd = etcd
	a.detectBindHost(overlay)
	redisProfile, err := a.redisProfile(overlay)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("event bus: %w", err)
	}
	undo.add(func() { _ = bus.Close() })
	a.bus, p.bus = bus, bus
	if err := etcd.SetStatus(ctx, etcdstore.AgentStarting); err != nil {
		return nil, fmt.Errorf("register in etcd: %w", err)
	}
	metrics := httpapi.NewMetrics()
	web, err := httpapi.Listen(httpapi.Options{
		Addr: a.cfg.Agent.InternalAddr.String(), Version: version.Version, Log: a.log,
		TLSCertFile: tlsFile(a.cfg.Agent.SSLEnabled, a.cfg.Agent.SSLCert), TLSKeyFile: tlsFile(a.cfg.Agent.SSLEnabled, a.cfg.Agent.SSLKey),
		Routes: map[string]http.Handler{"GET /v1/events": bus.Handler()},
		Pprof:  a.cfg.Debug.Enabled,
	}, metrics)
	if err != nil {
		return nil, fmt.Errorf("internal HTTP endpoint: %w", err)
	}
	undo.add(func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = web.Shutdown(shutdownCtx)
	})
	p.web, p.metrics = web, metrics
	web.AddReadinessCheck("etcd", "etcd", etcd.Ping)

	a.plugins = pluginhost.New(PluginOptions(a.cfg, a.log))
	if err := a.plugins.Start(ctx); err != nil {
		return nil, fmt.Errorf("start plugin host: %w", err)
	}
	undo.add(a.plugins.Stop)
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
		return nil, err
	}
	admin, err := adminapi.Listen(adminapi.SocketPath(a.cfg.Agent.IPCBasePath), a.plugins, a)
	if err != nil {
		return nil, err
	}
	a.admin = admin
	undo.add(func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = a.admin.Close(shutdownCtx)
	})
	// One port pool serves the RPC's assign_port and the kernels' ports.
	ports, err := portpool.New(a.cfg.Container.PortRange.Min, a.cfg.Container.PortRange.Max, a.cfg.Container.PortReuseCooldown, nil)
	if err != nil {
		return nil, fmt.Errorf("container.port-range: %w", err)
	}
	// A port another program holds would make Docker fail to publish it.
	ports.CheckWith(portpool.ListenProbe(probeHost(a.cfg.Container.BindHost)))
	var logDB *redis.Client
	if redisProfile != nil {
		logDB = redisProfile.Client(redisconn.RoleContainerLog)
		undo.add(func() { _ = logDB.Close() })
	}
	docker, err := kernel.ConnectDocker(ctx)
	if err != nil {
		return nil, err
	}
	undo.add(func() { _ = docker.Close() })
	// The session service marks the destroys whose kernel_terminated is
	// suppressed; the kernel manager's termination handler takes the marks.
	suppressed := session.NewSuppressions()
	kernels, err := a.newKernels(ctx, docker, ports, logDB, suppressed)
	if err != nil {
		return nil, err
	}
	undo.add(kernels.Close)
	p.kernels = kernels
	imageService := images.New(docker, images.Options{
		PullTimeout: a.cfg.API.PullTimeout, PushTimeout: a.cfg.API.PushTimeout, KernelLabel: kernel.LabelKernelID,
		Logger: a.log.With().Str("component", "images").Logger(),
	})
	undo.add(imageService.Close)
	p.images = imageService
	sessions := session.New(kernels, session.Options{
		KernelHost:   a.kernelHost(),
		Suppressions: suppressed,
		Images:       imageService,
		Events:       bus,
		Logger:       a.log.With().Str("component", "kernel-rpc").Logger(),
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
			ev := events.KernelTerminated{KernelID: kernelID, SessionID: sessionID, Reason: lifecycle.AlreadyTerminated, ExitCode: -1}
			if err := bus.Emit(context.WithoutCancel(ctx), ev); err != nil {
				a.log.Warn().Err(err).Msg("kernel_terminated event not sent")
			}
		},
	})
	// Its background destroys (sync_kernel_registry, exec-timeout, a
	// failed model service) finish, and model-service starts stop, before
	// the kernel manager closes.
	undo.add(sessions.Close)
	kernelMethods := rpcserver.NewKernelMethods(session.NewCalls(kernels), sessions)
	rpc, err := rpcserver.New(
		rpcserver.OptionsFromConfig(a.cfg, version.Version, a.log.With().Str("component", "rpc").Logger()),
		rpcserver.Deps{
			Kernels:  sessions,
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
		return nil, fmt.Errorf("start RPC server: %w", err)
	}
	p.rpc = rpc
	rpcserver.RegisterKernelMethods(rpc, kernelMethods)
	imageMethods := rpcserver.NewImageMethods(session.NewImages(imageService), rpcserver.ImageMethodsOptions{
		AgentID: a.cfg.Agent.ID, Events: bus, Logger: a.log.With().Str("component", "images").Logger(),
	})
	undo.add(imageMethods.Close)
	rpcserver.RegisterImageMethods(rpc, imageMethods)
	kernelOps := rpcserver.NewKernelOps(session.NewOps(kernels), rpcserver.KernelOpsOptions{Events: bus, Logger: a.log.With().Str("component", "kernel-ops").Logger()})
	undo.add(kernelOps.Close)
	rpcserver.RegisterKernelOpsMethods(rpc, kernelOps)
	batches := session.NewBatches(sessions, kernels, session.BatchOptions{
		Events: bus, Logger: a.log.With().Str("component", "batch").Logger(),
	})
	// The jobs stop before the kernel manager closes; the next agent
	// reports what they leave.
	undo.add(batches.Close)
	p.batches = batches
	rpcserver.RegisterBatchMethods(rpc, batches)
	if redisProfile != nil {
		p.imageDB = redisProfile.Client(redisconn.RoleImage)
		undo.add(func() { _ = p.imageDB.Close() })
		p.statDB = redisProfile.Client(redisconn.RoleStatistics)
		undo.add(func() { _ = p.statDB.Close() })
		if p.stats, err = a.newStats(p.statDB, docker, kernels, metrics); err != nil {
			return nil, err
		}
		liveDB := redisProfile.Client(redisconn.RoleLive)
		undo.add(func() { _ = liveDB.Close() })
		if p.presence, err = a.newPresence(liveDB, kernels); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// errRPCStopped is a Serve that ended by itself without an error.
var errRPCStopped = errors.New("serve returned")

// start takes back the kernels, starts every loop in loops (each one
// ends when ctx does), registers the agent in etcd and announces it. A
// failed step returns at once; Run then stops the loops started so far.
func (a *Agent) start(ctx context.Context, loops *errgroup.Group, p *parts, undo *closers) error {
	a.recoverKernels(ctx, p.kernels)
	loops.Go(func() error {
		if err := p.kernels.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error().Err(err).Str("component", "kernels").Msg("kernel lifecycle loop stopped")
		}
		return nil
	})
	p.batches.Resume(p.kernels.List())
	loops.Go(func() error { return a.trimmer.Run(ctx) })
	var rpcServing atomic.Bool
	rpcServing.Store(true)
	loops.Go(func() error {
		err := p.rpc.Serve(ctx)
		rpcServing.Store(false)
		if ctx.Err() != nil {
			if err != nil {
				a.log.Warn().Err(err).Msg("RPC server did not stop cleanly")
			}
			return nil
		}
		return fmt.Errorf("RPC server stopped: %w", cmp.Or(err, errRPCStopped))
	})
	p.web.AddReadinessCheck("rpc", "agent", func(context.Context) error {
		if !rpcServing.Load() {
			return errors.New("the RPC server stopped")
		}
		return nil
	})
	if err := p.etcd.PublishNodeAddress(ctx, a.nodeAddress()); err != nil {
		return fmt.Errorf("register in etcd: %w", err)
	}
	if err := p.etcd.SetStatus(ctx, etcdstore.AgentRunning); err != nil {
		return fmt.Errorf("register in etcd: %w", err)
	}
	if err := p.bus.Emit(ctx, events.AgentStarted{Reason: events.ReasonSelfStarted}); err != nil {
		a.log.Warn().Err(err).Msg("agent_started event not sent")
	}
	undo.add(func() {
		if err := p.bus.Emit(context.WithoutCancel(ctx), events.AgentTerminated{Reason: events.ReasonShutdown}); err != nil {
			a.log.Warn().Err(err).Msg("agent_terminated event not sent")
		}
	})
	loops.Go(func() error {
		a.refreshMetrics(ctx, p.metrics, p.kernels)
		return nil
	})
	if p.stats != nil {
		loops.Go(func() error {
			p.stats.Run(ctx)
			return nil
		})
		loops.Go(func() error {
			reportCommits(ctx, p.statDB, p.kernels.OngoingCommits, commitStatusInterval, commitStatusTTL, a.log)
			return nil
		})
	}
	if p.presence != nil {
		loops.Go(func() error {
			p.presence.Run(ctx)
			return nil
		})
	}
	loops.Go(func() error {
		return heartbeat.Run(ctx, heartbeat.Options{
			AgentID: a.cfg.Agent.ID,
			Source: heartbeat.SourceFunc(func(ctx context.Context) (heartbeat.Info, error) {
				info := a.heartbeatInfo(p.rpc.PublicKey())
				info.Images = a.heartbeatImages(ctx, p.images)
				return info, nil
			}),
			Bus:      p.bus,
			Interval: a.cfg.Debug.HeartbeatInterval,
			Images:   p.imageDB,
			Logger:   a.log.With().Str("component", "heartbeat").Logger(),
		})
	})
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
		member, err := etcdproc.Start(ctx, etcdproc.Options{
			Executable: a.cfg.Etcd.EmbeddedExecutable,
			DataDir:    a.cfg.Etcd.DataDir,
			Listen:     a.cfg.Etcd.Addrs[0],
			Log:        a.log,
		})
		if err != nil {
			return nil, nil, nil, err
		}
		closers = append(closers, member.Close)
		a.log.Info().Str("endpoint", member.Endpoint()).Int("pid", member.PID()).Str("data_dir", a.cfg.Etcd.DataDir).Msg("embedded etcd started")
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
func orderedMap(m map[string]any) wiremsg.Dict {
	out := make(wiremsg.Dict, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if inner, ok := v.(map[string]any); ok {
			v = orderedMap(inner)
		}
		out = append(out, wiremsg.KV{Key: k, Value: v})
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
