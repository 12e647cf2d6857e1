package rpcserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// ModelServiceStarter starts an inference kernel's model services;
// *kernel.Manager implements it.
type ModelServiceStarter interface {
	StartModelServices(ctx context.Context, kernelID string, def protocol.ModelDefinition, environ map[string]string) error
}

var _ ModelServiceStarter = (*kernel.Manager)(nil)

// modelDefinition checks an inference session's kernel config as
// upstream's _load_model_definition (agent/agent.py): a mount with
// usage_mode "model", internal_data.model_definition validated as
// ModelDefinition, and each model service's port against the ports known
// before the image is read (preopen ports, sshd, ttyd, allocated host
// ports); the kernel manager checks the image's ports again. Other
// session types have none.
func modelDefinition(cfg KernelCreationConfig) (*protocol.ModelDefinition, error) {
	if cfg.SessionType != kernel.SessionTypeInference {
		return nil, nil
	}
	var folder *VFolderMount
	for i := range cfg.Mounts {
		if cfg.Mounts[i].UsageMode == "model" {
			folder = &cfg.Mounts[i]
			break
		}
	}
	if folder == nil {
		return nil, kernel.ErrModelFolderNotSpecified
	}
	raw := cfg.InternalData["model_definition"]
	if !pyTruthy(raw) {
		return nil, fmt.Errorf("%w; vFolder %s (ID %s)", kernel.ErrModelDefinitionNotFound, folder.Name, folder.VFID)
	}
	def, err := kernel.DecodeModelDefinition(wiremsg.ToJSON(raw))
	if err != nil {
		return nil, err
	}
	var known []kernel.ServicePort
	if isMainRole(cfg.ClusterRole) {
		if known, err = kernel.PreopenServicePorts(cfg.PreopenPorts); err != nil {
			return nil, err
		}
	}
	known = kernel.WithIntrinsicServicePorts(known)
	for i, p := range cfg.AllocatedHostPorts {
		known = append(known, kernel.ServicePort{Name: fmt.Sprintf("hostport%d", i+1), Protocol: "internal", Ports: []int{p}})
	}
	if _, err := kernel.ModelServicePorts(def, known); err != nil {
		return nil, err
	}
	return &def, nil
}

func isMainRole(role string) bool { return role == "" || role == "main" || role == "master" }

// pyTruthy is Python's truth of a decoded value (`if not inlined`).
func pyTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case int64:
		return x != 0
	case float64:
		return x != 0
	case []any:
		return len(x) > 0
	case wiremsg.Map:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// startModels starts a new main kernel's model services in the background
// after kernel_started, as upstream's create_kernel does; one that fails
// destroys the kernel with failed-to-start, which the manager hears as
// kernel_terminated.
func (km *KernelMethods) startModels(p pendingKernel) {
	def := p.req.ModelDefinition
	starter, ok := km.svc.(ModelServiceStarter)
	if def == nil || !ok || !isMainRole(p.req.ClusterRole) {
		return
	}
	km.background.Go(func() {
		err := starter.StartModelServices(km.modelCtx, p.id, *def, p.req.Env)
		if err == nil || km.modelCtx.Err() != nil {
			return
		}
		km.opts.Logger.Error().Err(err).Str("kernel_id", p.id).Str("session_id", p.req.SessionID).
			Msg("model service failed to start; destroying the kernel")
		dctx, cancel := context.WithTimeout(context.Background(), km.opts.DestroyTimeout)
		defer cancel()
		if _, derr := km.svc.Destroy(dctx, p.id, lifecycle.FailedToStart); derr != nil && !errors.Is(derr, kernel.ErrKernelNotFound) {
			km.opts.Logger.Error().Err(derr).Str("kernel_id", p.id).Msg("destroying a kernel whose model service failed")
		}
	})
}
