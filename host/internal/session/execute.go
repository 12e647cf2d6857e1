package session

import (
	"context"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// Execute is execute: the run's step in the kernel's runner, with the
// execution_* events upstream's execute sends (agent/agent.py). The
// answer is the runner's result as the manager reads it.
func (s *Service) Execute(ctx context.Context, e sessionapi.Execution) (map[string]any, error) {
	opts := runnerclient.ExecOptions{FlushTimeout: e.FlushTimeout}
	if e.Mode == sessionapi.ModeBatch {
		var err error
		if opts.Batch, err = runnerclient.BatchFromOptions(e.Options); err != nil {
			return nil, &sessionapi.Error{Name: "TypeError", Err: fmt.Errorf("execute(): argument 'opts': %w", err)}
		}
	}
	res, err := s.executeReporting(ctx, e.SessionID, e.KernelID, e.RunID, e.Mode, e.Code, opts)
	if err != nil {
		return nil, NamedError(err)
	}
	out := res.Wire()
	if _, ok := out["files"]; !ok {
		out["files"] = []any{}
	}
	return out, nil
}

// executeReporting runs one step and reports it: execution_started
// before every call reaches the runner, even one that then fails, and
// how the run ended after (afterExecute).
func (s *Service) executeReporting(ctx context.Context, sessionID, kernelID, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error) {
	s.emitExecution(ctx, events.ExecutionStarted{SessionID: sessionID})
	res, err := s.kernels.Execute(ctx, kernelID, runID, mode, code, opts)
	if err != nil {
		return res, err
	}
	s.afterExecute(ctx, sessionID, kernelID, res)
	return res, nil
}

// emitExecution sends an execution_* event; the manager's idle checker
// counts them as session activity, so a lost one is logged, not fatal.
func (s *Service) emitExecution(ctx context.Context, ev events.Event) {
	if s.opts.Events == nil {
		return
	}
	if err := s.opts.Events.Emit(context.WithoutCancel(ctx), ev); err != nil {
		s.opts.Logger.Warn().Err(err).Str("event", ev.Name()).Msg("event not sent")
	}
}

// afterExecute reports how a run ended as upstream's execute does
// (agent/agent.py): execution_finished for "finished"; for "exec-timeout"
// execution_timeout and the kernel's destruction with reason exec-timeout,
// which runs in the background as upstream's injected DESTROY lifecycle
// event does, so the manager gets its answer first.
func (s *Service) afterExecute(ctx context.Context, sessionID, kernelID string, res runnerclient.Result) {
	switch res.Status {
	case runnerclient.StatusFinished:
		s.emitExecution(ctx, events.ExecutionFinished{SessionID: sessionID})
	case runnerclient.StatusExecTimeout:
		s.emitExecution(ctx, events.ExecutionTimeout{SessionID: sessionID})
		s.destroyInBackground(ctx, kernelID, lifecycle.ExecTimeout, func(err error) {
			s.opts.Logger.Warn().Err(err).Str("kernel_id", kernelID).Msg("destroy after exec-timeout failed")
		})
	}
}
