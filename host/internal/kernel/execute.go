package kernel

import (
	"context"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// Execute runs code in a kernel (upstream's execute RPC): mode is query,
// batch, input or continue; the result holds what the run printed within
// opts.FlushTimeout and its status, exec-timeout when the run outlived
// opts.ExecTimeout (Config.ExecTimeout when zero).
func (m *Manager) Execute(ctx context.Context, kernelID, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error) {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return runnerclient.Result{}, err
	}
	if opts.ExecTimeout <= 0 {
		opts.ExecTimeout = m.cfg.ExecTimeout
	}
	res, err := k.runner.Execute(ctx, runID, mode, code, opts)
	if err != nil {
		return res, fmt.Errorf("execute in kernel %s: %w", kernelID, err)
	}
	return res, nil
}

// Interrupt sends SIGINT to the kernel's running code (interrupt_kernel).
func (m *Manager) Interrupt(ctx context.Context, kernelID string) error {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return err
	}
	return k.runner.Interrupt()
}

// Complete returns completions at the cursor (get_completions).
func (m *Manager) Complete(ctx context.Context, kernelID string, req protocol.CompletionRequest) ([]string, error) {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return nil, err
	}
	return k.runner.Complete(ctx, req)
}

// StartService starts one of the kernel's services (start_service). The
// container ports come from the kernel's service ports when the request
// names none.
func (m *Manager) StartService(ctx context.Context, kernelID string, req protocol.ServiceRequest) (protocol.ServiceResult, error) {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return protocol.ServiceResult{}, err
	}
	if req.Port == 0 && len(req.Ports) == 0 {
		for _, sp := range k.recovery.ServicePorts {
			if sp.Name == req.Name {
				req.Ports = sp.ContainerPorts
				req.Port = sp.ContainerPorts[0]
				if req.Protocol == "" {
					req.Protocol = sp.Protocol
				}
			}
		}
	}
	return k.runner.StartService(ctx, req)
}

// ShutdownService stops a service the kernel's runner started.
func (m *Manager) ShutdownService(ctx context.Context, kernelID, name string) error {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return err
	}
	return k.runner.ShutdownService(ctx, name)
}

// Apps lists the services the kernel's image defines.
func (m *Manager) Apps(ctx context.Context, kernelID string) (protocol.AppsResult, error) {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return protocol.AppsResult{}, err
	}
	return k.runner.GetApps(ctx)
}
