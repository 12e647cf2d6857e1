package rpcserver

import (
	"context"
	"errors"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// KernelOpsService is what the kernel operation methods need;
// *kernel.Manager implements it.
type KernelOpsService interface {
	CreateLocalNetwork(ctx context.Context, name string) error
	DestroyLocalNetwork(ctx context.Context, name string) error
	Reset(ctx context.Context) ([]kernel.Termination, error)
}

var _ KernelOpsService = (*kernel.Manager)(nil)

// KernelOps serves create_local_network, destroy_local_network and
// reset_agent.
type KernelOps struct {
	svc KernelOpsService
}

// NewKernelOps wraps a kernel service.
func NewKernelOps(svc KernelOpsService) *KernelOps {
	return &KernelOps{svc: svc}
}

// RegisterKernelOpsMethods registers the kernel operation methods on s.
func RegisterKernelOpsMethods(s *Server, ops *KernelOps) {
	s.Register("create_local_network", ops.createLocalNetwork)
	s.Register("destroy_local_network", ops.destroyLocalNetwork)
	s.Register("reset_agent", ops.resetAgent)
}

// kernelOpsErr names the operation errors the manager tells apart, and
// the kernel errors as kernelErr does.
func kernelOpsErr(err error) error {
	if errors.Is(err, kernel.ErrInvalidNetwork) {
		return &Error{Name: "InvalidArgumentError", Err: err}
	}
	return kernelErr(err)
}

// networkName binds the single network_name argument.
func networkName(method string, call *Call) (string, error) {
	args, err := call.bind(param{name: "network_name"})
	if err != nil {
		return "", err
	}
	return argString(method, "network_name", args[0])
}

// createLocalNetwork(network_name) -> None.
func (o *KernelOps) createLocalNetwork(ctx context.Context, call *Call) (any, error) {
	name, err := networkName("create_local_network", call)
	if err != nil {
		return nil, err
	}
	return nil, kernelOpsErr(o.svc.CreateLocalNetwork(ctx, name))
}

// destroyLocalNetwork(network_name) -> None.
func (o *KernelOps) destroyLocalNetwork(ctx context.Context, call *Call) (any, error) {
	name, err := networkName("destroy_local_network", call)
	if err != nil {
		return nil, err
	}
	return nil, kernelOpsErr(o.svc.DestroyLocalNetwork(ctx, name))
}

// resetAgent() -> None: every kernel destroyed (see kernel.Manager.Reset).
func (o *KernelOps) resetAgent(ctx context.Context, call *Call) (any, error) {
	if _, err := call.bind(); err != nil {
		return nil, err
	}
	if _, err := o.svc.Reset(ctx); err != nil {
		return nil, kernelOpsErr(err)
	}
	return nil, nil
}

// sessionNetwork is the bridge network a session's kernels join, as
// upstream's apply_network: cluster_info.network_config.network_name in
// mode "bridge" (older managers sent cluster_info.network_name). Other
// modes (host, overlay plugins) are not served and leave Docker's default.
func sessionNetwork(ci ClusterInfo) string {
	mode, _ := ci.NetworkConfig["mode"].(string)
	switch {
	case mode == "bridge":
		name, _ := ci.NetworkConfig["network_name"].(string)
		return name
	case mode == "" && ci.NetworkName != "" && ci.NetworkName != "host":
		return ci.NetworkName
	}
	return ""
}
