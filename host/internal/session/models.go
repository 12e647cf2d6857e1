package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// modelDefinition checks an inference session's kernel config as
// upstream's _load_model_definition (agent/agent.py): a mount with
// usage_mode "model", internal_data.model_definition validated as
// ModelDefinition, and each model service's port against the ports known
// before the image is read (preopen ports, sshd, ttyd, allocated host
// ports); the kernel manager checks the image's ports again. Other
// session types have none.
func modelDefinition(cfg sessionapi.KernelCreationConfig) (*protocol.ModelDefinition, error) {
	if cfg.SessionType != kernel.SessionTypeInference {
		return nil, nil
	}
	var folder *sessionapi.VFolderMount
	for i := range cfg.Mounts {
		if cfg.Mounts[i].UsageMode == "model" {
			folder = &cfg.Mounts[i]
			break
		}
	}
	if folder == nil {
		return nil, kernel.ErrModelFolderNotSpecified
	}
	if cfg.ModelDefinition == nil {
		return nil, fmt.Errorf("%w; vFolder %s (ID %s)", kernel.ErrModelDefinitionNotFound, folder.Name, folder.VFID)
	}
	def, err := kernel.DecodeModelDefinition(cfg.ModelDefinition)
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

// startModels starts a new main kernel's model services in the background
// after kernel_started, as upstream's create_kernel does; one that fails
// destroys the kernel with failed-to-start, which the manager hears as
// kernel_terminated.
func (s *Service) startModels(req kernel.CreateRequest) {
	def := req.ModelDefinition
	starter, ok := s.kernels.(ModelServiceStarter)
	if def == nil || !ok || !isMainRole(req.ClusterRole) {
		return
	}
	s.background.Go(func() {
		err := starter.StartModelServices(s.modelCtx, req.KernelID, *def, req.Env)
		if err == nil || s.modelCtx.Err() != nil {
			return
		}
		s.opts.Logger.Error().Err(err).Str("kernel_id", req.KernelID).Str("session_id", req.SessionID).
			Msg("model service failed to start; destroying the kernel")
		dctx, cancel := context.WithTimeout(context.Background(), s.opts.DestroyTimeout)
		defer cancel()
		if _, derr := s.kernels.Destroy(dctx, req.KernelID, lifecycle.FailedToStart); derr != nil && !errors.Is(derr, kernel.ErrKernelNotFound) {
			s.opts.Logger.Error().Err(derr).Str("kernel_id", req.KernelID).Msg("destroying a kernel whose model service failed")
		}
	})
}
