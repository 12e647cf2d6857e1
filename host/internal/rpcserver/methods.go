package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

func (s *Server) registerBuiltins() {
	s.Register("ping", s.ping)
	s.Register("health", s.health)
	s.Register("health_v2", s.healthV2)
	s.Register("gather_hwinfo", s.gatherHWInfo)
	s.Register("gather_hwinfo_v2", s.gatherHWInfoV2)
	s.Register("get_local_config", s.getLocalConfig)
	s.Register("assign_port", s.assignPort)
	s.Register("release_port", s.releasePort)
	if s.deps.Kernels != nil {
		s.Register("check_pulling", s.checkPulling)
		s.Register("check_creating", s.kernelCheck("check_creating", KernelRegistry.IsCreating))
		s.Register("check_running", s.kernelCheck("check_running", KernelRegistry.IsRunning))
		s.Register("sync_kernel_registry", s.syncKernelRegistry)
		s.Register("scan_gpu_alloc_map", s.scanGPUAllocMap)
	}
}

// ping(msg) returns msg unchanged.
func (s *Server) ping(_ context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "msg"})
	if err != nil {
		return nil, err
	}
	return args[0], nil
}

func (s *Server) healthReport(ctx context.Context) map[string]any {
	status, healthy := "ok", true
	checks := []any{}
	if s.deps.Hardware != nil {
		devices, err := s.deps.Hardware.HardwareHealth(ctx)
		check := map[string]any{"name": "hardware", "healthy": err == nil}
		if err != nil {
			check["error"] = err.Error()
			status, healthy = "degraded", false
		}
		checks = append(checks, check)
		for _, d := range devices {
			if d.Status != "healthy" {
				status = "degraded"
			}
		}
	}
	return map[string]any{
		"status":    status,
		"version":   s.opts.Version,
		"component": "agent",
		"connectivity": map[string]any{
			"overall_healthy":     healthy,
			"connectivity_checks": checks,
			"timestamp":           s.deps.Now().UTC().Format(time.RFC3339Nano),
		},
	}
}

func (s *Server) health(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	return s.healthReport(ctx), nil
}

// healthV2 takes the v3 envelope kwargs {"req": {}}.
func (s *Server) healthV2(ctx context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "req", optional: true})
	if err != nil {
		return nil, err
	}
	if _, ok := args[0].(wiremsg.Map); !ok && args[0] != nil {
		return nil, mustBe(argPath("health_v2", "req"), "dict", args[0])
	}
	return s.healthReport(ctx), nil
}

func (s *Server) hardware(ctx context.Context) ([]DeviceHealth, error) {
	if s.deps.Hardware == nil {
		return nil, nil
	}
	devices, err := s.deps.Hardware.HardwareHealth(ctx)
	if err != nil {
		return nil, fmt.Errorf("gather hardware health: %w", err)
	}
	return devices, nil
}

func metadataMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Server) gatherHWInfo(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	devices, err := s.hardware(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(devices))
	for _, d := range devices {
		out[d.DeviceKey] = map[string]any{"status": d.Status, "status_info": d.StatusInfo, "metadata": metadataMap(d.Metadata)}
	}
	return out, nil
}

func (s *Server) gatherHWInfoV2(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(param{name: "req", optional: true}); err != nil {
		return nil, err
	}
	devices, err := s.hardware(ctx)
	if err != nil {
		return nil, err
	}
	list := make([]any, 0, len(devices))
	for _, d := range devices {
		list = append(list, map[string]any{"device_name": d.DeviceKey, "status": d.Status, "status_info": d.StatusInfo, "metadata": metadataMap(d.Metadata)})
	}
	return map[string]any{"devices": list}, nil
}

// getLocalConfig([agent_id]): the manager passes agent_id positionally.
func (s *Server) getLocalConfig(_ context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "agent_id", optional: true})
	if err != nil {
		return nil, err
	}
	if err := s.checkAgentID(args[0]); err != nil {
		return nil, err
	}
	var abuse any
	if s.opts.AbuseReportPath != "" {
		abuse = s.opts.AbuseReportPath
	}
	return map[string]any{
		"agent":   map[string]any{"abuse-report-path": abuse},
		"watcher": map[string]any{},
	}, nil
}

// checkPulling(image): image is a canonical name (or an ImageRef).
func (s *Server) checkPulling(ctx context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "image"})
	if err != nil {
		return nil, err
	}
	var image string
	if ref, ok := args[0].(wiremsg.ImageRef); ok {
		image = ref.Canonical()
	} else if image, err = strValue(argPath("check_pulling", "image"), args[0]); err != nil {
		return nil, err
	}
	return s.deps.Kernels.IsPulling(ctx, image)
}

func (s *Server) kernelCheck(method string, check func(KernelRegistry, context.Context, string) (bool, error)) Method {
	return func(ctx context.Context, call *Call) (any, error) {
		args, err := call.bind(param{name: "kernel_id"})
		if err != nil {
			return nil, err
		}
		id, err := strValue(argPath(method, "kernel_id"), args[0])
		if err != nil {
			return nil, err
		}
		return check(s.deps.Kernels, ctx, dashedID(id))
	}
}

// syncKernelRegistry([(kernel_id, session_id), ...]).
func (s *Server) syncKernelRegistry(ctx context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "raw_kernel_session_ids"})
	if err != nil {
		return nil, err
	}
	list, ok := args[0].([]any)
	if !ok {
		return nil, mustBe(argPath("sync_kernel_registry", "raw_kernel_session_ids"), "a list", args[0])
	}
	live := make([]sessionapi.KernelSession, 0, len(list))
	for i, item := range list {
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			return nil, typeError("sync_kernel_registry(): item %d must be a (kernel_id, session_id) pair", i)
		}
		kid, err := strValue(argPath("sync_kernel_registry", fmt.Sprintf("raw_kernel_session_ids[%d][0]", i)), pair[0])
		if err != nil {
			return nil, err
		}
		sid, err := strValue(argPath("sync_kernel_registry", fmt.Sprintf("raw_kernel_session_ids[%d][1]", i)), pair[1])
		if err != nil {
			return nil, err
		}
		live = append(live, sessionapi.KernelSession{KernelID: dashedID(kid), SessionID: sid})
	}
	return nil, s.deps.Kernels.SyncWithManager(ctx, live)
}

// dashedID is a kernel id that parses as a UUID in the dashed form, and
// any other id as it came (it names no kernel).
func dashedID(id string) string {
	if u, err := wiremsg.ParseUUID(id); err == nil {
		return u.String()
	}
	return id
}

func (s *Server) assignPort(_ context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	port, err := s.deps.Ports.Assign()
	if err != nil {
		return nil, &Error{Name: "InsufficientResource", Err: err}
	}
	return int64(port), nil
}

func (s *Server) releasePort(_ context.Context, call *Call) (any, error) {
	args, err := call.bind(param{name: "port_no"})
	if err != nil {
		return nil, err
	}
	port, err := intValue(argPath("release_port", "port_no"), args[0])
	if err != nil {
		return nil, err
	}
	if err := s.deps.Ports.Release(int(port)); err != nil {
		// Upstream adds the port back to its set without checking; a
		// double release is harmless, so only log it.
		if errors.Is(err, portpool.ErrNotAssigned) {
			s.log.Debug().Int64("port", port).Msg("release_port of a port that is not assigned")
			return nil, nil
		}
		return nil, err
	}
	return nil, nil
}

func (s *Server) scanGPUAllocMap(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	return s.deps.Kernels.GPUAllocMap(ctx)
}
