package kernel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// ErrModelServiceFailed is a model service that did not start; the caller
// destroys the kernel with failed-to-start, as upstream.
var ErrModelServiceFailed = errors.New("model service failed to start")

// ModelServiceWait is how long the agent waits for a model service's
// result, as upstream's feed_start_model_service: max_retries ×
// max_wait_time + 10 s with health checks, else 10 s.
func ModelServiceWait(model protocol.ModelInfo) time.Duration {
	if s := model.Service; s != nil && s.HealthCheck != nil && s.HealthCheck.Enable {
		return time.Duration((float64(s.HealthCheck.MaxRetries)*s.HealthCheck.MaxWaitTime + 10) * float64(time.Second))
	}
	return 10 * time.Second
}

// ModelsToStart are the models whose services the main kernel starts, as
// upstream's create_kernel prepares them: no start_command takes the
// image's Cmd (shell-joined), the VLLM_*/SGLANG_* arguments of environ
// are appended, and a model without a service or a command is skipped.
func ModelsToStart(def protocol.ModelDefinition, imageCmd []string, environ map[string]string) ([]protocol.ModelInfo, error) {
	extra, err := LegacyInferenceArgs(environ)
	if err != nil {
		return nil, err
	}
	var out []protocol.ModelInfo
	for _, model := range def.Models {
		if model.Service == nil {
			continue
		}
		svc := *model.Service
		if (svc.StartCommand == nil || *svc.StartCommand == "") && len(imageCmd) > 0 {
			cmd := shellquote.Join(imageCmd...)
			svc.StartCommand = &cmd
		}
		if svc.StartCommand == nil || *svc.StartCommand == "" {
			continue
		}
		if len(extra) > 0 {
			cmd := *svc.StartCommand + " " + shellquote.Join(extra...)
			svc.StartCommand = &cmd
		}
		model.Service = &svc
		out = append(out, model)
	}
	return out, nil
}

// StartModelServices starts the model services of a running inference
// kernel one by one through its runner and returns once each answered. A
// service that failed, or did not answer within ModelServiceWait, is
// ErrModelServiceFailed. Models skipped (no service, no command) are
// logged.
func (m *Manager) StartModelServices(ctx context.Context, kernelID string, def protocol.ModelDefinition, environ map[string]string) error {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return err
	}
	var imageCmd []string
	if img, err := m.cfg.Engine.ImageInspect(ctx, k.image); err == nil && img.Config != nil {
		imageCmd = img.Config.Cmd
	}
	models, err := ModelsToStart(def, imageCmd, environ)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrModelServiceFailed, err)
	}
	if len(models) < len(def.Models) {
		m.log.Warn().Str("kernel", kernelID).Int("models", len(def.Models)).Int("starting", len(models)).
			Msg("skipping models without a service or a start command (the image has no Cmd)")
	}
	for _, model := range models {
		wctx, cancel := context.WithTimeout(ctx, ModelServiceWait(model))
		res, err := k.runner.StartModelService(wctx, model)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			return fmt.Errorf("%w: model %s: %w", ErrModelServiceFailed, model.Name, err)
		case res.Status != "started" && res.Status != "running":
			return fmt.Errorf("%w: model %s: %s", ErrModelServiceFailed, model.Name, res.Error)
		}
		m.log.Info().Str("kernel", kernelID).Str("model", model.Name).Int("port", model.Service.Port).Msg("model service started")
	}
	return nil
}
