// Command fakeplugin is a compute plugin for the host's tests. Its behaviour
// comes from its executable name, so one build serves every case:
//
//	baiagent-plugin-fake        a healthy plugin of kind "fake" with 2 devices
//	baiagent-plugin-dupcpu      claims the kind "cpu" that the cpu plugin owns
//	baiagent-plugin-unprefixed  describes a slot not prefixed by its kind
//	baiagent-plugin-badconfig   rejects its configuration key "mode"
//	baiagent-plugin-oldapi      speaks only plugin API 0.9
//	baiagent-plugin-apiv2       a build for plugin API 2.x (handshake protocol 2)
//	baiagent-plugin-notserving  answers NOT_SERVING on grpc.health.v1
//	baiagent-plugin-crash       panics 300 ms after it is configured
//	baiagent-plugin-noshutdown  answers go-plugin's Shutdown and keeps running
//	baiagent-plugin-badrestore  restores one device more than it was given
//	baiagent-plugin-openconfig  accepts configuration keys it does not know
//
// Every other name rejects unknown configuration keys and restores exactly
// the allocation the agent recorded in resource.txt, so the plain fake
// passes the conformance kit (pluginverify) and each broken one fails it.
//
// Its configuration keys "hook" (a host path), "network" (a Docker network
// name) and "syscalls" (a list of syscall names) are handed back in every
// container spec, for the kernel tests of plugin hooks, networks and
// seccomp allowances.
package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/shopspring/decimal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/baiagent/baiagent/proto/sdk"
)

type fake struct {
	name string
	slot string

	mu       sync.Mutex
	hook     string
	network  string
	syscalls []string
}

func (f *fake) Describe(context.Context) (sdk.Description, error) {
	key, slot := f.name, f.slot
	apis := []string{sdk.APIVersion}
	switch f.name {
	case "dupcpu", "cpu":
		key = "cpu"
	case "oldapi":
		apis = []string{"0.9"}
	}
	return sdk.Description{
		Name:        f.name,
		Version:     "0.0.1-test",
		APIVersions: apis,
		Kinds: []sdk.ResourceKind{{
			Key:       key,
			SlotTypes: []sdk.SlotType{{Name: slot, Kind: sdk.SlotCount, HumanReadableName: "Fake"}},
			AllocMap:  sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly},
		}},
	}, nil
}

func (f *fake) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	if f.name == "badconfig" {
		return &sdk.ConfigError{Problems: []sdk.ConfigProblem{{Key: "mode", Reason: "must be one of a, b"}}}
	}
	if f.name != "openconfig" {
		var problems []sdk.ConfigProblem
		for key := range req.Config {
			switch key {
			case "hook", "network", "syscalls":
			default:
				problems = append(problems, sdk.ConfigProblem{Key: key, Reason: "unknown key"})
			}
		}
		if len(problems) > 0 {
			return &sdk.ConfigError{Problems: problems}
		}
	}
	if f.name == "crash" {
		go func() {
			time.Sleep(300 * time.Millisecond)
			panic("fake plugin exploded: GPU fell off the bus")
		}()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook, _ = req.Config["hook"].(string)
	f.network, _ = req.Config["network"].(string)
	f.syscalls = nil
	if list, ok := req.Config["syscalls"].([]any); ok {
		for _, v := range list {
			if name, ok := v.(string); ok {
				f.syscalls = append(f.syscalls, name)
			}
		}
	}
	return nil
}

func (f *fake) devices() []sdk.Device {
	var out []sdk.Device
	for _, id := range []string{"0", "1"} {
		out = append(out, sdk.Device{
			ID: id, Model: "Fake Accelerator", NUMANode: 0, Health: sdk.HealthHealthy,
			SlotName: f.slot, Capacity: decimal.NewFromInt(1),
		})
	}
	return out
}

func (f *fake) ListDevices(context.Context) ([]sdk.Device, error) { return f.devices(), nil }

func (f *fake) WatchDevices(ctx context.Context) (<-chan []sdk.Device, error) {
	ch := make(chan []sdk.Device, 1)
	ch <- f.devices()
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

func (f *fake) PrepareContainer(_ context.Context, req sdk.PrepareRequest) (sdk.ContainerSpec, error) {
	var ids []string
	for id := range req.Allocation[f.slot] {
		ids = append(ids, id)
	}
	spec := sdk.ContainerSpec{Env: map[string]string{"FAKE_DEVICES": strings.Join(ids, ",")}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook != "" {
		spec.Hooks = []string{f.hook}
	}
	if f.network != "" {
		spec.DockerNetworks = []string{f.network}
	}
	spec.AllowedSyscalls = f.syscalls
	return spec, nil
}

func (f *fake) RestoreAllocation(_ context.Context, req sdk.RestoreRequest) (sdk.Allocation, error) {
	recorded, err := sdk.AllocationFromResourceData(req.ResourceData, []string{sdk.KindOfSlot(f.slot)})
	if err != nil {
		return nil, err
	}
	out := sdk.Allocation{}
	if per, ok := recorded[f.slot]; ok {
		out[f.slot] = per
	}
	if f.name == "badrestore" {
		// A plugin that reads back more than the container was given.
		if out[f.slot] == nil {
			out[f.slot] = map[string]decimal.Decimal{}
		}
		out[f.slot]["1"] = decimal.NewFromInt(1)
		out[f.slot]["0"] = decimal.NewFromInt(1)
	}
	return out, nil
}

func (f *fake) NodeMetrics(context.Context) ([]sdk.Metric, error) { return nil, nil }

func (f *fake) ContainerMetrics(context.Context, []sdk.ContainerRef) ([]sdk.Metric, error) {
	return nil, nil
}

func (f *fake) HardwareInfo(context.Context) (sdk.HardwareInfo, error) {
	return sdk.HardwareInfo{Status: sdk.HealthHealthy}, nil
}

func main() {
	name := strings.TrimPrefix(filepath.Base(os.Args[0]), "baiagent-plugin-")
	log := sdk.Logger(name)
	log.Info("fake plugin starting", "pid", os.Getpid())
	slot := name + ".device"
	switch name {
	case "dupcpu", "cpu":
		slot = "cpu"
	case "unprefixed":
		slot = "device"
	}
	impl := &fake{name: name, slot: slot}
	if name == "apiv2" || name == "noshutdown" || name == "notserving" {
		// Exit with the agent as sdk.Serve does, so each plugin served
		// without it is broken in its one way only.
		go exitWithParent(os.Getppid())
	}
	switch name {
	case "apiv2":
		// What a plugin built for a future API major serves.
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  plugin.HandshakeConfig{ProtocolVersion: 2, MagicCookieKey: sdk.Handshake().MagicCookieKey, MagicCookieValue: sdk.Handshake().MagicCookieValue},
			VersionedPlugins: map[int]plugin.PluginSet{2: {sdk.PluginName: &sdk.GRPCPlugin{Impl: impl}}},
			GRPCServer:       plugin.DefaultGRPCServer,
			Logger:           log,
		})
	case "noshutdown":
		// Swallow go-plugin's controller Shutdown: the agent has to kill it.
		ignore := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if info.FullMethod == "/plugin.GRPCController/Shutdown" {
				return &emptypb.Empty{}, nil
			}
			return handler(ctx, req)
		}
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  sdk.Handshake(),
			VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.PluginName: &sdk.GRPCPlugin{Impl: impl}}},
			GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
				return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(ignore))...)
			},
			Logger: log,
		})
	case "notserving":
		// go-plugin registers its own health service as SERVING; answer
		// for it.
		notServing := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if info.FullMethod == grpc_health_v1.Health_Check_FullMethodName {
				return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_NOT_SERVING}, nil
			}
			return handler(ctx, req)
		}
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  sdk.Handshake(),
			VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.PluginName: &sdk.GRPCPlugin{Impl: impl}}},
			GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
				return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(notServing))...)
			},
			Logger: log,
		})
	default:
		sdk.Serve(impl, log)
	}
}

func exitWithParent(parent int) {
	for range time.Tick(100 * time.Millisecond) {
		if os.Getppid() != parent {
			os.Exit(2)
		}
	}
}
