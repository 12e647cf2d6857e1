package sdk

import (
	"context"
	"encoding/json"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/baiagent/baiagent/proto/gen/bai/plugin/v1"
)

// grpcServer adapts a Plugin to the generated gRPC service.
type grpcServer struct {
	pluginv1.UnimplementedComputePluginServiceServer
	impl Plugin
}

// toStatus keeps a gRPC status the plugin chose and wraps anything else, so
// the agent sees the plugin's own message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *grpcServer) Describe(ctx context.Context, _ *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return descriptionToProto(d), nil
}

func (s *grpcServer) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	cfg := map[string]any{}
	if len(req.GetConfigJson()) > 0 {
		if err := json.Unmarshal(req.GetConfigJson(), &cfg); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "config_json is not a JSON object: %v", err)
		}
	}
	err := s.impl.Configure(ctx, ConfigureRequest{
		APIVersion: req.GetApiVersion(),
		Config:     cfg,
		Agent: AgentInfo{
			AgentID:        req.GetAgent().GetAgentId(),
			DockerVersion:  req.GetAgent().GetDockerVersion(),
			DockerRuntimes: req.GetAgent().GetDockerRuntimes(),
		},
	})
	var cerr *ConfigError
	if errors.As(err, &cerr) {
		resp := &pluginv1.ConfigureResponse{}
		for _, p := range cerr.Problems {
			resp.Problems = append(resp.Problems, &pluginv1.ConfigProblem{Key: p.Key, Reason: p.Reason})
		}
		return resp, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (s *grpcServer) ListDevices(ctx context.Context, _ *pluginv1.ListDevicesRequest) (*pluginv1.ListDevicesResponse, error) {
	devs, err := s.impl.ListDevices(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.ListDevicesResponse{Devices: devicesToProto(devs)}, nil
}

func (s *grpcServer) WatchDevices(_ *pluginv1.WatchDevicesRequest, stream pluginv1.ComputePluginService_WatchDevicesServer) error {
	ctx := stream.Context()
	updates, err := s.impl.WatchDevices(ctx)
	if err != nil {
		return toStatus(err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case devs, ok := <-updates:
			if !ok {
				return nil
			}
			if err := stream.Send(&pluginv1.WatchDevicesResponse{Devices: devicesToProto(devs)}); err != nil {
				return err
			}
		}
	}
}

func (s *grpcServer) PrepareContainer(ctx context.Context, req *pluginv1.PrepareContainerRequest) (*pluginv1.PrepareContainerResponse, error) {
	alloc, err := allocationFromProto(req.GetAllocation())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	spec, err := s.impl.PrepareContainer(ctx, PrepareRequest{
		Allocation:  alloc,
		ConfigDir:   req.GetConfigDir(),
		KernelID:    req.GetKernelId(),
		ImageDistro: req.GetImageDistro(),
		ImageArch:   req.GetImageArch(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.PrepareContainerResponse{Spec: specToProto(spec)}, nil
}

func (s *grpcServer) RestoreAllocation(ctx context.Context, req *pluginv1.RestoreAllocationRequest) (*pluginv1.RestoreAllocationResponse, error) {
	alloc, err := s.impl.RestoreAllocation(ctx, RestoreRequest{
		ResourceData: req.GetResourceData(),
		Labels:       req.GetLabels(),
		CpusetCpus:   req.GetCpusetCpus(),
		MemoryBytes:  req.GetMemoryBytes(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.RestoreAllocationResponse{Allocation: allocationToProto(alloc)}, nil
}

func (s *grpcServer) NodeMetrics(ctx context.Context, _ *pluginv1.NodeMetricsRequest) (*pluginv1.NodeMetricsResponse, error) {
	ms, err := s.impl.NodeMetrics(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.NodeMetricsResponse{Metrics: metricsToProto(ms)}, nil
}

func (s *grpcServer) ContainerMetrics(ctx context.Context, req *pluginv1.ContainerMetricsRequest) (*pluginv1.ContainerMetricsResponse, error) {
	refs := make([]ContainerRef, 0, len(req.GetContainers()))
	for _, c := range req.GetContainers() {
		refs = append(refs, ContainerRef{ContainerID: c.GetContainerId(), CgroupPath: c.GetCgroupPath(), PID: int(c.GetPid())})
	}
	ms, err := s.impl.ContainerMetrics(ctx, refs)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.ContainerMetricsResponse{Metrics: metricsToProto(ms)}, nil
}

func (s *grpcServer) HardwareInfo(ctx context.Context, _ *pluginv1.HardwareInfoRequest) (*pluginv1.HardwareInfoResponse, error) {
	hw, err := s.impl.HardwareInfo(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.HardwareInfoResponse{Status: pluginv1.Health(hw.Status), StatusInfo: hw.StatusInfo, Metadata: hw.Metadata}, nil
}
