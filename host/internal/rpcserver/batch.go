package rpcserver

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// BatchTrigger starts batch jobs; *session.Batches implements it.
type BatchTrigger interface {
	Trigger(ctx context.Context, t sessionapi.BatchTrigger) error
}

// RegisterBatchMethods registers trigger_batch_execution on s.
func RegisterBatchMethods(s *Server, b BatchTrigger) {
	s.Register("trigger_batch_execution", func(ctx context.Context, call *Call) (any, error) {
		return triggerBatch(ctx, b, call)
	})
}

// trigger_batch_execution(session_id, kernel_id, code, timeout) -> None: the
// job runs in the background (agent/server.py).
func triggerBatch(ctx context.Context, b BatchTrigger, call *Call) (any, error) {
	const method = "trigger_batch_execution"
	args, err := call.bind(param{name: "session_id"}, param{name: "kernel_id"}, param{name: "code"}, param{name: "timeout"})
	if err != nil {
		return nil, err
	}
	t := sessionapi.BatchTrigger{}
	if t.SessionID, t.KernelID, err = sessionKernelArgs(method, args); err != nil {
		return nil, err
	}
	if args[2] != nil {
		if t.Code, err = strValue(argPath(method, "code"), args[2]); err != nil {
			return nil, err
		}
	}
	timeout, given, err := floatValue(argPath(method, "timeout"), args[3])
	if err != nil {
		return nil, err
	}
	if math.IsNaN(timeout) || timeout > 100*365*24*3600 {
		return nil, &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument 'timeout' %v is out of range", method, timeout)}
	}
	if given {
		d := time.Duration(timeout * float64(time.Second))
		t.Timeout = &d
	}
	return nil, b.Trigger(ctx, t)
}
