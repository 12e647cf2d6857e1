package sdk

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"

	pluginv1 "github.com/baiagent/baiagent/proto/gen/bai/plugin/v1"
)

// Client is the agent's view of a plugin process: it implements Plugin over a
// gRPC connection, so the host never sees streams or wire messages.
type Client struct {
	rpc pluginv1.ComputePluginServiceClient
}

var _ Plugin = (*Client)(nil)

// NewClient wraps a connection to a plugin.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: pluginv1.NewComputePluginServiceClient(conn)}
}

func (c *Client) Describe(ctx context.Context) (Description, error) {
	resp, err := c.rpc.Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return Description{}, fmt.Errorf("describe: %w", err)
	}
	return descriptionFromProto(resp)
}

// Configure sends the configuration; per-key problems come back as *ConfigError.
func (c *Client) Configure(ctx context.Context, req ConfigureRequest) error {
	raw, err := json.Marshal(req.Config)
	if err != nil {
		return fmt.Errorf("configure: encode config: %w", err)
	}
	resp, err := c.rpc.Configure(ctx, &pluginv1.ConfigureRequest{
		ApiVersion: req.APIVersion,
		ConfigJson: raw,
		Agent: &pluginv1.AgentInfo{
			AgentId:        req.Agent.AgentID,
			DockerVersion:  req.Agent.DockerVersion,
			DockerRuntimes: req.Agent.DockerRuntimes,
		},
	})
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if len(resp.GetProblems()) > 0 {
		cerr := &ConfigError{}
		for _, p := range resp.GetProblems() {
			cerr.Problems = append(cerr.Problems, ConfigProblem{Key: p.GetKey(), Reason: p.GetReason()})
		}
		return cerr
	}
	return nil
}

func (c *Client) ListDevices(ctx context.Context) ([]Device, error) {
	resp, err := c.rpc.ListDevices(ctx, &pluginv1.ListDevicesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devicesFromProto(resp.GetDevices())
}

// WatchDevices turns the server stream into a channel. The channel closes when
// ctx ends or the stream breaks (for example because the plugin died).
func (c *Client) WatchDevices(ctx context.Context) (<-chan []Device, error) {
	stream, err := c.rpc.WatchDevices(ctx, &pluginv1.WatchDevicesRequest{})
	if err != nil {
		return nil, fmt.Errorf("watch devices: %w", err)
	}
	out := make(chan []Device)
	go func() {
		defer close(out)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			devs, err := devicesFromProto(resp.GetDevices())
			if err != nil {
				return
			}
			select {
			case out <- devs:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (c *Client) PrepareContainer(ctx context.Context, req PrepareRequest) (ContainerSpec, error) {
	resp, err := c.rpc.PrepareContainer(ctx, &pluginv1.PrepareContainerRequest{
		Allocation:  allocationToProto(req.Allocation),
		ConfigDir:   req.ConfigDir,
		KernelId:    req.KernelID,
		ImageDistro: req.ImageDistro,
		ImageArch:   req.ImageArch,
	})
	if err != nil {
		return ContainerSpec{}, fmt.Errorf("prepare container: %w", err)
	}
	return specFromProto(resp.GetSpec()), nil
}

func (c *Client) RestoreAllocation(ctx context.Context, req RestoreRequest) (Allocation, error) {
	resp, err := c.rpc.RestoreAllocation(ctx, &pluginv1.RestoreAllocationRequest{
		ResourceData: req.ResourceData,
		Labels:       req.Labels,
		CpusetCpus:   req.CpusetCpus,
		MemoryBytes:  req.MemoryBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("restore allocation: %w", err)
	}
	return allocationFromProto(resp.GetAllocation())
}

func (c *Client) NodeMetrics(ctx context.Context) ([]Metric, error) {
	resp, err := c.rpc.NodeMetrics(ctx, &pluginv1.NodeMetricsRequest{})
	if err != nil {
		return nil, fmt.Errorf("node metrics: %w", err)
	}
	return metricsFromProto(resp.GetMetrics())
}

func (c *Client) ContainerMetrics(ctx context.Context, containers []ContainerRef) ([]Metric, error) {
	req := &pluginv1.ContainerMetricsRequest{}
	for _, ref := range containers {
		req.Containers = append(req.Containers, &pluginv1.ContainerRef{ContainerId: ref.ContainerID, CgroupPath: ref.CgroupPath, Pid: int32(ref.PID)})
	}
	resp, err := c.rpc.ContainerMetrics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("container metrics: %w", err)
	}
	return metricsFromProto(resp.GetMetrics())
}

func (c *Client) HardwareInfo(ctx context.Context) (HardwareInfo, error) {
	resp, err := c.rpc.HardwareInfo(ctx, &pluginv1.HardwareInfoRequest{})
	if err != nil {
		return HardwareInfo{}, fmt.Errorf("hardware info: %w", err)
	}
	return HardwareInfo{Status: Health(resp.GetStatus()), StatusInfo: resp.GetStatusInfo(), Metadata: resp.GetMetadata()}, nil
}
