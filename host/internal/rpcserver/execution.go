package rpcserver

import (
	"context"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// emitExecution sends an execution_* event; the manager's idle checker
// counts them as session activity, so a lost one is logged, not fatal.
func (km *KernelMethods) emitExecution(ctx context.Context, ev events.Event) {
	if km.opts.Events == nil {
		return
	}
	if err := km.opts.Events.Emit(context.WithoutCancel(ctx), ev); err != nil {
		km.opts.Logger.Warn().Err(err).Str("event", ev.Name()).Msg("event not sent")
	}
}

// afterExecute reports how a run ended as upstream's execute does
// (agent/agent.py): execution_finished for "finished"; for "exec-timeout"
// execution_timeout and the kernel's destruction with reason exec-timeout,
// which runs in the background as upstream's injected DESTROY lifecycle
// event does, so the manager gets its answer first.
func (km *KernelMethods) afterExecute(ctx context.Context, sessionID, kernelID string, res runnerclient.Result) {
	switch res.Status {
	case runnerclient.StatusFinished:
		km.emitExecution(ctx, events.ExecutionFinished{SessionID: sessionID})
	case runnerclient.StatusExecTimeout:
		km.emitExecution(ctx, events.ExecutionTimeout{SessionID: sessionID})
		km.background.Add(1)
		go func() {
			defer km.background.Done()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), km.opts.DestroyTimeout)
			defer cancel()
			if _, err := km.svc.Destroy(dctx, kernelID, lifecycle.ExecTimeout); err != nil {
				km.opts.Logger.Warn().Err(err).Str("kernel_id", kernelID).Msg("destroy after exec-timeout failed")
			}
		}()
	}
}
