// Package session is the agent's session service: what a manager's session
// asks of this node beyond one kernel's operations. It creates a session's
// kernels (prepare, pull, create, started, concurrently; a failed kernel
// leaves its siblings for the manager to clean up, as upstream), decides
// which kernel_terminated events a destroy suppresses, answers the
// registry questions the manager asks (check_creating, check_running,
// sync_kernel_registry, scan_gpu_alloc_map), reports execution events,
// runs batch jobs (trigger_batch_execution) and starts inference sessions'
// model services. The RPC layer decodes the manager's calls into the
// plain requests of sessionapi and encodes the answers.
package session

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// Kernels is what the session service needs from the kernel lifecycle;
// *kernel.Manager implements it.
type Kernels interface {
	Create(ctx context.Context, req kernel.CreateRequest) (kernel.Created, error)
	Destroy(ctx context.Context, kernelID string, reason lifecycle.Reason) (kernel.Termination, error)
	DestroyEcho(ctx context.Context, kernelID string, reason lifecycle.Reason) (kernel.Termination, error)
	Execute(ctx context.Context, kernelID, runID, mode, code string, opts runnerclient.ExecOptions) (runnerclient.Result, error)
	Get(kernelID string) (kernel.Info, error)
	List() []kernel.Info
}

var _ Kernels = (*kernel.Manager)(nil)

// ModelServiceStarter starts an inference kernel's model services;
// *kernel.Manager implements it. Kernels without it start none.
type ModelServiceStarter interface {
	StartModelServices(ctx context.Context, kernelID string, def protocol.ModelDefinition, environ map[string]string) error
}

var _ ModelServiceStarter = (*kernel.Manager)(nil)

// Emitter sends agent events; *events.Bus implements it.
type Emitter interface {
	Emit(ctx context.Context, ev events.Event) error
}

// Options tune the session service.
type Options struct {
	// KernelHost is create_kernels' kernel_host: the address the manager
	// and app proxy reach kernel ports at (container.advertised-host, else
	// bind-host). Empty means "127.0.0.1".
	KernelHost string
	// Suppressions are shared with the kernel manager's termination
	// handler (NewSuppressions); nil makes the service its own.
	Suppressions *Suppressions
	// OnAlreadyTerminated is called by SyncWithManager for each kernel the
	// manager lists but this agent does not know, and by DestroyKernel of
	// a kernel this agent does not know (without Suppress): upstream sends
	// kernel_terminated with reason already-terminated. May be nil.
	OnAlreadyTerminated func(ctx context.Context, kernelID, sessionID string)
	// Images makes each kernel's image present per its auto_pull before the
	// kernel is created. Nil pulls nothing: a missing image then fails the
	// creation.
	Images *images.Service
	// Creation hooks, in upstream's event order: OnPreparing first,
	// OnPulling only when the image is pulled (image is its canonical name),
	// OnCreating before the container is made, OnStarted after it started
	// with create_kernels' result for it (the agent sends kernel_preparing,
	// kernel_pulling, kernel_creating and kernel_started). All may be nil.
	OnPreparing func(ctx context.Context, kernelID, sessionID string)
	OnPulling   func(ctx context.Context, kernelID, sessionID, image string)
	OnCreating  func(ctx context.Context, kernelID, sessionID string)
	OnStarted   func(ctx context.Context, kernelID, sessionID string, result map[string]any)
	// DestroyTimeout bounds the destroys that SyncWithManager, an
	// exec-timeout and a failed model service start in the background;
	// zero means 2 minutes.
	DestroyTimeout time.Duration
	// Events receives execution_started, execution_finished and
	// execution_timeout; nil drops them.
	Events Emitter
	Logger zerolog.Logger
}

// Service is the session service over a kernel lifecycle.
type Service struct {
	kernels    Kernels
	opts       Options
	suppressed *Suppressions
	background sync.WaitGroup
	// modelCtx ends the model-service starts on Close.
	modelCtx    context.Context
	modelCancel context.CancelFunc
}

// New makes a session service over kernels.
func New(kernels Kernels, opts Options) *Service {
	if opts.KernelHost == "" {
		opts.KernelHost = "127.0.0.1"
	}
	if opts.DestroyTimeout <= 0 {
		opts.DestroyTimeout = 2 * time.Minute
	}
	if opts.Suppressions == nil {
		opts.Suppressions = NewSuppressions()
	}
	mctx, cancel := context.WithCancel(context.Background())
	return &Service{kernels: kernels, opts: opts, suppressed: opts.Suppressions, modelCtx: mctx, modelCancel: cancel}
}

// TakeSuppressed reports whether the kernel's termination event must not
// be sent, and forgets the mark (see Suppressions.Take).
func (s *Service) TakeSuppressed(kernelID string) bool { return s.suppressed.Take(kernelID) }

// Wait waits for the destroys SyncWithManager and exec-timeouts started
// in the background.
func (s *Service) Wait() { s.background.Wait() }

// Close stops the model-service starts still waiting for their runner's
// answer and waits for all the background work.
func (s *Service) Close() {
	s.modelCancel()
	s.background.Wait()
}

// destroyInBackground destroys a kernel after the call that decided it
// has answered, as upstream's injected DESTROY lifecycle events do; undo
// runs when the destroy fails.
func (s *Service) destroyInBackground(ctx context.Context, kernelID string, reason lifecycle.Reason, failed func(error)) {
	s.background.Go(func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DestroyTimeout)
		defer cancel()
		if _, err := s.kernels.Destroy(dctx, kernelID, reason); err != nil && failed != nil {
			failed(err)
		}
	})
}
