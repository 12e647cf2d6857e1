package session

import (
	"context"
	"errors"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// CallsBackend is the kernel lifecycle's single-kernel calls;
// *kernel.Manager implements it.
type CallsBackend interface {
	UploadFile(kernelID, filename string, data []byte) error
	DownloadFile(kernelID, path string) ([]byte, error)
	DownloadSingle(kernelID, path string) ([]byte, error)
	ListFiles(kernelID, path string) (kernel.FileListing, error)
	Interrupt(ctx context.Context, kernelID string) error
	Complete(ctx context.Context, kernelID string, req protocol.CompletionRequest) ([]string, error)
	StartService(ctx context.Context, kernelID string, req protocol.ServiceRequest) (protocol.ServiceResult, error)
	ShutdownService(ctx context.Context, kernelID, name string) error
	KernelLogs(ctx context.Context, kernelID string) (string, error)
	Get(kernelID string) (kernel.Info, error)
	List() []kernel.Info
}

var _ CallsBackend = (*kernel.Manager)(nil)

// Calls are the calls the manager makes on one kernel of a session (files,
// interrupt, completions, services, logs) in sessionapi's plain terms,
// with errors named as upstream's exceptions.
type Calls struct {
	k CallsBackend
}

// NewCalls wraps a kernel lifecycle.
func NewCalls(k CallsBackend) *Calls { return &Calls{k: k} }

// fileErr names kernel file errors as upstream's exceptions: paths out of
// /home/work are PermissionError, size and kind refusals ValueError, a
// missing kernel KernelNotFoundError, and file-system failures
// RuntimeError.
func fileErr(err error) error {
	var named *sessionapi.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &named):
		return err
	case errors.Is(err, kernel.ErrKernelNotFound):
		return NamedError(err)
	case errors.Is(err, kernel.ErrOutsideWork):
		return &sessionapi.Error{Name: "PermissionError", Err: err}
	case errors.Is(err, kernel.ErrTooLarge), errors.Is(err, kernel.ErrNotSingleFile):
		return &sessionapi.Error{Name: "ValueError", Err: err}
	}
	return &sessionapi.Error{Name: "RuntimeError", Err: err}
}

// UploadFile is upload_file.
func (c *Calls) UploadFile(kernelID, filename string, data []byte) error {
	return fileErr(c.k.UploadFile(kernelID, filename, data))
}

// DownloadFile is download_file: a tar archive.
func (c *Calls) DownloadFile(kernelID, path string) ([]byte, error) {
	data, err := c.k.DownloadFile(kernelID, path)
	return data, fileErr(err)
}

// DownloadSingle is download_single: the file's bytes.
func (c *Calls) DownloadSingle(kernelID, path string) ([]byte, error) {
	data, err := c.k.DownloadSingle(kernelID, path)
	return data, fileErr(err)
}

// ListFiles is list_files.
func (c *Calls) ListFiles(kernelID, path string) (sessionapi.FileListing, error) {
	l, err := c.k.ListFiles(kernelID, path)
	return sessionapi.FileListing(l), fileErr(err)
}

// Interrupt is interrupt_kernel.
func (c *Calls) Interrupt(ctx context.Context, kernelID string) error {
	return NamedError(c.k.Interrupt(ctx, kernelID))
}

// Complete is get_completions: the runner's suggestions, or why there are
// none (failure) when the runner failed; a missing or stopped kernel is
// an error.
func (c *Calls) Complete(ctx context.Context, kernelID string, req sessionapi.Completion) (suggestions []string, failure string, err error) {
	suggestions, err = c.k.Complete(ctx, kernelID, protocol.CompletionRequest{Code: req.Code, Options: protocol.CompletionOptions{
		Row: req.Row, Col: req.Col, Line: req.Line, Post: req.Post}})
	if err != nil {
		if errors.Is(err, kernel.ErrKernelNotFound) || errors.Is(err, kernel.ErrNotRunning) {
			return nil, "", NamedError(err)
		}
		return nil, err.Error(), nil
	}
	return suggestions, "", nil
}

// StartService is start_service: the runner's answer; a blocked kernel
// answers "operation blocked" as upstream's DockerKernel.start_service
// (agent/docker/kernel.py), an unknown service "invalid service name".
func (c *Calls) StartService(ctx context.Context, kernelID, name string, opts map[string]any) (sessionapi.ServiceResult, error) {
	info, err := c.k.Get(kernelID)
	if err != nil {
		return sessionapi.ServiceResult{}, NamedError(err)
	}
	if info.BlockServicePorts {
		return sessionapi.ServiceResult{Status: "failed", Error: "operation blocked"}, nil
	}
	known := false
	for _, sp := range info.ServicePorts {
		if sp.Name == name {
			known = true
		}
	}
	if !known {
		return sessionapi.ServiceResult{Status: "failed", Error: "invalid service name"}, nil
	}
	res, err := c.k.StartService(ctx, kernelID, protocol.ServiceRequest{Name: name, Options: opts})
	if err != nil {
		if errors.Is(err, kernel.ErrKernelNotFound) || errors.Is(err, kernel.ErrNotRunning) {
			return sessionapi.ServiceResult{}, NamedError(err)
		}
		return sessionapi.ServiceResult{Status: "failed", Error: err.Error()}, nil
	}
	return sessionapi.ServiceResult{Status: res.Status, Error: res.Error}, nil
}

// ShutdownService is shutdown_service.
func (c *Calls) ShutdownService(ctx context.Context, kernelID, name string) error {
	return NamedError(c.k.ShutdownService(ctx, kernelID, name))
}

// KernelLogs is get_logs.
func (c *Calls) KernelLogs(ctx context.Context, kernelID string) (string, error) {
	logs, err := c.k.KernelLogs(ctx, kernelID)
	return logs, NamedError(err)
}

// List is baiagent_list_kernels.
func (c *Calls) List() []sessionapi.KernelSummary {
	infos := c.k.List()
	out := make([]sessionapi.KernelSummary, 0, len(infos))
	for _, info := range infos {
		out = append(out, sessionapi.KernelSummary{
			ID: info.KernelID, SessionID: info.SessionID, ContainerID: info.ContainerID, Image: info.Image,
			State: info.State, ReplInPort: info.ReplInPort, ReplOutPort: info.ReplOutPort,
			ServicePorts: servicePorts(info.ServicePorts), CreatedAt: info.CreatedAt,
		})
	}
	return out
}

// servicePorts are a kernel's service ports in sessionapi's terms.
func servicePorts(ports []scratch.ServicePort) []sessionapi.ServicePort {
	out := make([]sessionapi.ServicePort, len(ports))
	for i, sp := range ports {
		out[i] = sessionapi.ServicePort(sp)
	}
	return out
}
