package session

import (
	"context"
	"errors"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// OpsBackend is the kernel lifecycle's operations on kernels and
// networks; *kernel.Manager implements it.
type OpsBackend interface {
	Restart(ctx context.Context, req kernel.RestartRequest) (kernel.Created, error)
	StartCommit(req kernel.CommitRequest) (*kernel.Commit, error)
	CommitStatus(kernelID, subdir string) (string, error)
	CreateLocalNetwork(ctx context.Context, name string) error
	DestroyLocalNetwork(ctx context.Context, name string) error
	Reset(ctx context.Context) ([]kernel.Termination, error)
}

var _ OpsBackend = (*kernel.Manager)(nil)

// Ops are restart_kernel, commit, get_commit_status,
// create_local_network, destroy_local_network and reset_agent in
// sessionapi's plain terms, with errors named as upstream's exceptions.
type Ops struct {
	k OpsBackend
}

// NewOps wraps a kernel lifecycle.
func NewOps(k OpsBackend) *Ops { return &Ops{k: k} }

// opsErr names the operation errors the manager tells apart, and the
// kernel errors as NamedError does.
func opsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kernel.ErrInvalidNetwork):
		return &sessionapi.Error{Name: "InvalidArgumentError", Err: err}
	case errors.Is(err, kernel.ErrInvalidPath), errors.Is(err, kernel.ErrInvalidCommit):
		// Upstream: ValueError("malformed committed path.").
		return &sessionapi.Error{Name: "ValueError", Err: err}
	}
	return NamedError(err)
}

// Restart is restart_kernel. The image must be here already: a restart
// pulls nothing (the stored request has no registry credentials).
func (o *Ops) Restart(ctx context.Context, r sessionapi.Restart) (sessionapi.Restarted, error) {
	req := kernel.RestartRequest{KernelID: r.KernelID, SessionID: r.SessionID, Image: r.Image}
	if r.Present != nil {
		req.Update = RestartUpdate(r.Update, r.Present)
	}
	c, err := o.k.Restart(ctx, req)
	if err != nil {
		return sessionapi.Restarted{}, opsErr(err)
	}
	return sessionapi.Restarted{ContainerID: c.ContainerID, ReplInPort: c.ReplInPort, ReplOutPort: c.ReplOutPort,
		ServicePorts: servicePorts(c.ServicePorts)}, nil
}

// StartCommit checks a commit and takes the kernel's commit lock; run
// makes the image (the caller runs it as a background task).
func (o *Ops) StartCommit(c sessionapi.Commit) (run func(ctx context.Context) error, err error) {
	commit, err := o.k.StartCommit(kernel.CommitRequest(c))
	if err != nil {
		return nil, opsErr(err)
	}
	return func(ctx context.Context) error {
		_, err := commit.Run(ctx)
		return err
	}, nil
}

// CommitStatus is get_commit_status: "ready" or "ongoing".
func (o *Ops) CommitStatus(kernelID, subdir string) (string, error) {
	status, err := o.k.CommitStatus(kernelID, subdir)
	return status, opsErr(err)
}

// CreateLocalNetwork is create_local_network.
func (o *Ops) CreateLocalNetwork(ctx context.Context, name string) error {
	return opsErr(o.k.CreateLocalNetwork(ctx, name))
}

// DestroyLocalNetwork is destroy_local_network.
func (o *Ops) DestroyLocalNetwork(ctx context.Context, name string) error {
	return opsErr(o.k.DestroyLocalNetwork(ctx, name))
}

// Reset is reset_agent: every kernel destroyed (see kernel.Manager.Reset).
func (o *Ops) Reset(ctx context.Context) error {
	_, err := o.k.Reset(ctx)
	return opsErr(err)
}
