package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// BatchRunID is the run id of a batch job (upstream's RUN_ID_FOR_BATCH_JOB).
const BatchRunID = "batch-job"

// batchFlush is each round's flush timeout, as upstream's execute_batch.
const batchFlush = time.Second

// BatchStore keeps batch jobs across agent restarts and lets a resumed job
// reach its run; *kernel.Manager implements it.
type BatchStore interface {
	SaveBatchJob(kernelID string, job kernel.BatchJob) error
	LoadBatchJob(kernelID string) (kernel.BatchJob, bool, error)
	AttachRun(ctx context.Context, kernelID, runID string) error
	RunnerStatus(ctx context.Context, kernelID string) (protocol.Status, error)
}

var _ BatchStore = (*kernel.Manager)(nil)

// BatchOptions configure the batch jobs.
type BatchOptions struct {
	// Events receives session_success and session_failure; nil drops them.
	Events Emitter
	Logger zerolog.Logger
}

// Batches runs the batch jobs of trigger_batch_execution in the background
// (upstream's execute_batch) and resumes them after an agent restart.
// Close stops them and waits; a stopped job's result is reported by the
// next agent.
type Batches struct {
	km    *KernelMethods
	store BatchStore
	opts  BatchOptions

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	active map[string]bool // kernel id -> a job runs
}

// NewBatches serves batch jobs through km's execute path, so that every
// round sends the execution_* events.
func NewBatches(km *KernelMethods, store BatchStore, opts BatchOptions) *Batches {
	ctx, cancel := context.WithCancel(context.Background())
	return &Batches{km: km, store: store, opts: opts, ctx: ctx, cancel: cancel, active: map[string]bool{}}
}

// RegisterBatchMethods registers trigger_batch_execution on s.
func RegisterBatchMethods(s *Server, b *Batches) {
	s.Register("trigger_batch_execution", b.trigger)
}

// Close stops the jobs and waits for them.
func (b *Batches) Close() {
	b.cancel()
	b.wg.Wait()
}

// Wait waits for the jobs to end on their own (tests).
func (b *Batches) Wait() { b.wg.Wait() }

// trigger_batch_execution(session_id, kernel_id, code, timeout) -> None: the
// job runs in the background (agent/server.py, agent/agent.py
// create_batch_execution_task).
func (b *Batches) trigger(ctx context.Context, call *Call) (any, error) {
	const method = "trigger_batch_execution"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_id"}, param{name: "code"}, param{name: "timeout"})
	if err != nil {
		return nil, err
	}
	sessionID, err := kernelIDArg(method, "session_id", args[0])
	if err != nil {
		return nil, err
	}
	kernelID, err := kernelIDArg(method, "kernel_id", args[1])
	if err != nil {
		return nil, err
	}
	code := ""
	if args[2] != nil {
		if code, err = argString(method, "code", args[2]); err != nil {
			return nil, err
		}
	}
	timeout, given, err := floatArg(method, "timeout", args[3])
	if err != nil {
		return nil, err
	}
	if math.IsNaN(timeout) || timeout > 100*365*24*3600 {
		return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'timeout' %v is out of range", method, timeout)}
	}
	if _, err := b.km.svc.Get(kernelID); err != nil {
		// Upstream logs and reports nothing (agent/agent.py execute_batch).
		b.opts.Logger.Warn().Str("kernel_id", kernelID).Msg("trigger_batch_execution: no such kernel")
		return nil, nil
	}
	job := kernel.BatchJob{SessionID: sessionID}
	if given {
		// As asyncio.timeout: 0 or less times out at once.
		job.Deadline = time.Now().Add(time.Duration(timeout * float64(time.Second)))
	}
	if err := b.store.SaveBatchJob(kernelID, job); err != nil {
		// The job still runs; only a restart would lose its result.
		b.opts.Logger.Warn().Err(err).Str("kernel_id", kernelID).Msg("batch job not recorded for a restart")
	}
	b.start(kernelID, job, code, false)
	return nil, nil
}

// Resume restarts result reporting for the batch kernels whose job was
// triggered and not reported before the agent stopped (agent/agent.py
// _iterate_batch_result). Call it after kernel recovery.
func (b *Batches) Resume(kernels []kernel.Info) {
	for _, k := range kernels {
		if k.SessionType != kernel.SessionTypeBatch {
			continue
		}
		job, ok, err := b.store.LoadBatchJob(k.KernelID)
		if err != nil {
			b.opts.Logger.Warn().Err(err).Str("kernel_id", k.KernelID).Msg("batch job not resumed")
			continue
		}
		if !ok || job.Reported {
			continue
		}
		b.opts.Logger.Info().Str("kernel_id", k.KernelID).Msg("resuming a batch job's result reporting")
		b.start(k.KernelID, job, "", true)
	}
}

func (b *Batches) start(kernelID string, job kernel.BatchJob, code string, resumed bool) {
	b.mu.Lock()
	if b.active[kernelID] {
		b.mu.Unlock()
		b.opts.Logger.Warn().Str("kernel_id", kernelID).Msg("a batch job already runs in this kernel")
		return
	}
	b.active[kernelID] = true
	b.mu.Unlock()
	b.wg.Go(func() {
		defer func() {
			b.mu.Lock()
			delete(b.active, kernelID)
			b.mu.Unlock()
		}()
		b.run(kernelID, job, code, resumed)
	})
}

// run executes and continues the job until it finishes, then reports it.
// It reports nothing when the agent stops first (the next agent resumes).
func (b *Batches) run(kernelID string, job kernel.BatchJob, code string, resumed bool) {
	log := b.opts.Logger.With().Str("kernel_id", kernelID).Str("session_id", job.SessionID).Logger()
	ctx := b.ctx
	if !job.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, job.Deadline)
		defer cancel()
	}
	mode := runnerclient.ModeBatch
	opts := runnerclient.ExecOptions{FlushTimeout: batchFlush, Batch: runnerclient.Batch{Exec: code}}
	if resumed {
		if err := b.store.AttachRun(ctx, kernelID, BatchRunID); err != nil {
			b.ended(ctx, log, kernelID, job, err)
			return
		}
		mode = runnerclient.ModeContinue
	}
	for {
		res, err := b.km.executeReporting(ctx, job.SessionID, kernelID, BatchRunID, mode, "", opts)
		if err != nil {
			b.ended(ctx, log, kernelID, job, err)
			return
		}
		switch res.Status {
		case runnerclient.StatusFinished:
			exit := -1
			if res.ExitCode != nil {
				exit = *res.ExitCode
			}
			b.report(log, kernelID, job, exit)
			return
		case runnerclient.StatusExecTimeout:
			b.reportTimeout(log, kernelID, job)
			return
		}
		if resumed {
			// The exec step's "finished" may have gone out while no agent
			// listened; the runner remembers its exit code.
			if st, err := b.store.RunnerStatus(ctx, kernelID); err == nil && !st.Busy && st.BatchExit != nil {
				b.report(log, kernelID, job, *st.BatchExit)
				return
			}
		}
		mode, opts = runnerclient.ModeContinue, runnerclient.ExecOptions{FlushTimeout: batchFlush}
	}
}

// ended handles a round that failed: the timeout is reported, an agent
// stop or a vanished kernel reports nothing.
func (b *Batches) ended(ctx context.Context, log zerolog.Logger, kernelID string, job kernel.BatchJob, err error) {
	switch {
	case b.ctx.Err() != nil:
		log.Info().Msg("batch job left to the next agent")
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		b.reportTimeout(log, kernelID, job)
	default:
		log.Warn().Err(err).Msg("batch job ended without a result")
	}
}

func (b *Batches) reportTimeout(log zerolog.Logger, kernelID string, job kernel.BatchJob) {
	b.emit(log, kernelID, job, events.SessionFailure{SessionID: job.SessionID, Reason: lifecycle.TaskTimeout, ExitCode: -2})
}

func (b *Batches) report(log zerolog.Logger, kernelID string, job kernel.BatchJob, exit int) {
	if exit == 0 {
		b.emit(log, kernelID, job, events.SessionSuccess{SessionID: job.SessionID, Reason: lifecycle.TaskFinished, ExitCode: 0})
		return
	}
	b.emit(log, kernelID, job, events.SessionFailure{SessionID: job.SessionID, Reason: lifecycle.TaskFailed, ExitCode: exit})
}

// emit sends the result and records that it went out, so that a restart
// does not send it again.
func (b *Batches) emit(log zerolog.Logger, kernelID string, job kernel.BatchJob, ev events.Event) {
	log.Info().Str("event", ev.Name()).Msg("batch job ended")
	if b.opts.Events != nil {
		if err := b.opts.Events.Emit(context.WithoutCancel(b.ctx), ev); err != nil {
			log.Error().Err(err).Str("event", ev.Name()).Msg("batch result not sent")
		}
	}
	job.Reported = true
	if err := b.store.SaveBatchJob(kernelID, job); err != nil && !errors.Is(err, kernel.ErrKernelNotFound) {
		log.Warn().Err(err).Msg("batch result not recorded as reported")
	}
}

// executeReporting is execute's path with its execution_* events, as
// upstream's execute_batch calls execute.
func (km *KernelMethods) executeReporting(ctx context.Context, sessionID, kernelID, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error) {
	km.emitExecution(ctx, events.ExecutionStarted{SessionID: sessionID})
	res, err := km.svc.Execute(ctx, kernelID, runID, mode, code, opts)
	if err != nil {
		return res, err
	}
	km.afterExecute(ctx, sessionID, kernelID, res)
	return res, nil
}
