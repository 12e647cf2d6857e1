package rpcserver

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// backgroundTasks runs the work that upstream's methods hand to its
// BackgroundTaskManager (check_and_pull's pulls, commit): each task is
// announced with bgtask_updated before its id goes back to the manager,
// and ends with bgtask_done, bgtask_failed, or bgtask_cancelled when Close
// cancelled it (common/bgtask/bgtask.py). The tasks outlive the call that
// started them; Close cancels those still running.
type backgroundTasks struct {
	events Emitter // nil drops the events
	log    zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBackgroundTasks(ev Emitter, log zerolog.Logger) *backgroundTasks {
	ctx, cancel := context.WithCancel(context.Background())
	return &backgroundTasks{events: ev, log: log, ctx: ctx, cancel: cancel}
}

// emit sends an event even when ctx has ended: a task's last word must not
// be lost to the cancellation that ended it.
func (b *backgroundTasks) emit(ctx context.Context, ev events.Event) {
	if b.events == nil {
		return
	}
	if err := b.events.Emit(context.WithoutCancel(ctx), ev); err != nil {
		b.log.Warn().Err(err).Str("event", ev.Name()).Msg("event not sent")
	}
}

// start announces the task id (from newTaskID) and runs the task in the
// background; a nil result is bgtask_done, an error bgtask_failed with the
// error's text, or bgtask_cancelled when the task was cancelled under it.
func (b *backgroundTasks) start(ctx context.Context, id wiremsg.UUID, what string, run func(ctx context.Context) error) {
	task := id.String()
	b.emit(ctx, events.BgtaskUpdated{TaskID: task, Message: "Task started"})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := run(b.ctx)
		switch {
		case err == nil:
			b.emit(b.ctx, events.BgtaskDone{TaskID: task})
		case b.ctx.Err() != nil:
			// Whatever error the cancellation surfaced as, upstream's
			// CancelledError branch answers the same.
			b.log.Warn().Err(err).Str("task_id", task).Msg(what + " cancelled")
			b.emit(b.ctx, events.BgtaskCancelled{TaskID: task, Message: events.BgtaskCancelledMessage})
		default:
			b.log.Warn().Err(err).Str("task_id", task).Msg(what + " failed")
			b.emit(b.ctx, events.BgtaskFailed{TaskID: task, Message: err.Error()})
		}
	}()
}

// Wait waits for the running tasks.
func (b *backgroundTasks) Wait() { b.wg.Wait() }

// Close cancels the running tasks and waits for them.
func (b *backgroundTasks) Close() {
	b.cancel()
	b.wg.Wait()
}

// newTaskID is a random (version 4) UUID.
func newTaskID() (wiremsg.UUID, error) {
	var u wiremsg.UUID
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("task id: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}
