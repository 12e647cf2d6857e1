// Package agent runs the agent daemon: it wires the configuration, the
// plugin host and the local admin endpoint together and keeps them running
// until it is told to stop.
package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/resources"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
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

// startKernels connects to Docker, takes back the kernels a previous agent
// left running (allocations, ports, runners) and follows Docker's events.
func (a *Agent) startKernels(ctx context.Context, rpc *rpcserver.Server) (*kernel.Manager, error) {
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, fmt.Errorf("cannot reach the Docker engine (backend = docker): %w", err)
	}
	runner := a.cfg.Agent.KernelRunnerPath
	if runner == "" {
		if runner, err = kernel.DefaultRunnerPath(); err != nil {
			return nil, err
		}
	}
	log := a.log.With().Str("component", "kernels").Logger()
	m, err := kernel.New(kernel.Config{
		AgentID:             a.cfg.Agent.ID,
		ScratchRoot:         a.cfg.Container.ScratchRoot,
		KernelUID:           a.cfg.Container.KernelUID,
		KernelGID:           a.cfg.Container.KernelGID,
		BindHost:            a.cfg.Container.BindHost,
		RunnerPath:          runner,
		CreationConcurrency: a.cfg.Agent.KernelCreationConcurrency,
		ScratchSize:         int64(a.cfg.Container.ScratchSize),
		OnTerminated: func(t kernel.Termination) {
			log.Info().Str("kernel_id", t.KernelID).Str("reason", t.Reason).Int("exit_code", t.ExitCode).Msg("kernel terminated")
		},
		Docker:    docker,
		Allocator: a.allocator,
		Plugins:   a.plugins,
		Ports:     rpc.Ports(),
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
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
	return m, nil
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
	rpc, err := rpcserver.New(
		rpcserver.OptionsFromConfig(a.cfg, version.Version, a.log.With().Str("component", "rpc").Logger()),
		rpcserver.Deps{Hardware: pluginHardware{plugins: a.plugins, timeout: 10 * time.Second}},
	)
	if err != nil {
		return fmt.Errorf("start RPC server: %w", err)
	}
	kernels, err := a.startKernels(ctx, rpc)
	if err != nil {
		return err
	}
	defer kernels.Close()
	rpcDone := make(chan error, 1)
	go func() { rpcDone <- rpc.Serve(ctx) }()
	a.log.Info().Str("agent_id", a.cfg.Agent.ID).Dur("startup", time.Since(started)).
		Str("rpc", rpc.Endpoint()).Bool("curve", rpc.PublicKey() != "").
		Str("admin_socket", adminapi.SocketPath(a.cfg.Agent.IPCBasePath)).Msg("agent started")
	select {
	case <-ctx.Done():
	case err := <-rpcDone:
		return fmt.Errorf("RPC server stopped: %w", err)
	}
	a.log.Info().Msg("agent stopping; kernels keep running")
	if err := <-rpcDone; err != nil {
		a.log.Warn().Err(err).Msg("RPC server did not stop cleanly")
	}
	return nil
}
