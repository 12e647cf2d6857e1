// Package kernel runs Backend.AI kernels as Docker containers (spec §5):
// creation with allocation, plugin container specs, scratch dir and ports;
// execution through the in-container kernel runner; destruction; Docker
// events and periodic reconciliation; and recovery of every kernel after an
// agent restart from Docker labels and the kernel's scratch files.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/proto/sdk"
)

// Errors a caller (the RPC layer) maps to answers. Allocation failures
// arrive wrapped and match the alloc package's sentinels
// (alloc.ErrInsufficientResource, alloc.ErrInvalidArgument, ...).
var (
	ErrKernelNotFound = errors.New("kernel not found")
	ErrKernelExists   = errors.New("kernel already exists")
	ErrImageNotFound  = errors.New("image not found")
	ErrInvalidRequest = errors.New("invalid kernel creation request")
	ErrNotRunning     = errors.New("kernel is not running")
	ErrRunnerTimeout  = errors.New("kernel runner did not answer in time")
)

// RunnerMountPath is where the runner binary appears in every container.
const RunnerMountPath = "/opt/kernel/baiagent-kernel-runner"

// Plugins is what the manager needs from the plugin host
// (*pluginhost.Host implements it).
type Plugins interface {
	Running() []pluginhost.RunningPlugin
	Plugin(name string) (sdk.Plugin, sdk.Description, bool)
}

// PortAllocator hands out host ports (*portpool.Pool implements it).
type PortAllocator interface {
	Assign() (int, error)
	Release(port int) error
	// Reserve takes a port someone else chose; false when the pool does
	// not manage it (outside its range).
	Reserve(port int) bool
}

// Config is the manager's part of agent.toml and its collaborators.
type Config struct {
	// AgentID labels every container; only containers with this agent's id
	// are ever touched.
	AgentID string
	// ScratchRoot holds <kernel-id>/{config,work}.
	ScratchRoot string
	// KernelUID and KernelGID run the kernel; -1 means the agent's own.
	KernelUID, KernelGID int
	// BindHost is the host address service ports bind to; empty means all.
	BindHost string
	// RunnerPath is the host path of the static baiagent-kernel-runner.
	RunnerPath string
	// CreationConcurrency bounds simultaneous creations
	// (kernel-creation-concurrency); zero means 4.
	CreationConcurrency int
	// RunnerStartTimeout bounds the wait for a new kernel's runner; zero
	// means 60 s.
	RunnerStartTimeout time.Duration
	// RunnerIdle closes a kernel's input connection to its runner after
	// this long without a request (reopened by the next); zero means
	// DefaultRunnerIdle. OnRunnerIdle, if set, is told each time.
	RunnerIdle   time.Duration
	OnRunnerIdle func()
	// StopTimeout is the grace period of a destroy before SIGKILL; zero
	// means 10 s as upstream.
	StopTimeout time.Duration
	// ExecTimeout bounds each execute run (runnerclient.ExecOptions's,
	// when a call sets none); a run past it ends as exec-timeout. Zero, as
	// upstream's Docker backend always passes, means no bound.
	ExecTimeout time.Duration
	// ReconcileInterval is the period of the lifecycle sync; zero means 10 s.
	ReconcileInterval time.Duration
	// NoPeriodicReconcile turns the periodic lifecycle sync off
	// (agent.sync-container-lifecycles.enabled = false). Docker's events
	// are still followed, and a reconnect to them still reconciles once.
	NoPeriodicReconcile bool
	// KeepContainers leaves a finished kernel's container in place for
	// inspection (debug.skip-container-deletion): clean-up frees everything
	// else, and reconciliation leaves this agent's unknown containers alone.
	KeepContainers bool
	// ScratchType is container.scratch-type; empty means hostdir. With
	// memory each kernel's scratch dir and /tmp are tmpfs mounts; with
	// hostfile the scratch dir is a loop-mounted ext4 of ScratchSize.
	ScratchType scratch.Kind
	// ScratchSize is container.scratch-size: written to resource.txt, the
	// size of a hostfile scratch, and a hostdir scratch's limit where the
	// scratch root's filesystem has project quotas (scratch.PlanSizeLimit).
	ScratchSize int64
	// CommitPath is agent.image-commit-path: commits save their tars and
	// locks under it. Empty refuses commits.
	CommitPath string
	// ContainerLogMaxLength is [container-logs] max-length: the container
	// log is rotated over 5 files of a fifth of it each, as upstream; zero
	// means DefaultContainerLogMaxLength.
	ContainerLogMaxLength int64
	// ExtraContainerOptsFiles are the operator's extra container options
	// files, deep-merged in order into every container config; nil means
	// DefaultExtraContainerOptsFiles, an empty slice none.
	ExtraContainerOptsFiles []string
	// OnTerminated is told about each kernel that ended, once. It runs on
	// the cleaning goroutine and must not block for long.
	OnTerminated func(Termination)
	// BeforeRemove, when set, runs during clean-up while the kernel's
	// container still exists, just before it is removed (the agent stores
	// the container's log for the manager there). It must return within a
	// bounded time.
	BeforeRemove func(ctx context.Context, kernelID, containerID string)

	// Engine runs the containers (NewDockerEngine in the agent).
	Engine    Engine
	Allocator *alloc.Allocator
	Plugins   Plugins
	Ports     PortAllocator
	Logger    zerolog.Logger
}

// Termination says how a kernel ended.
type Termination struct {
	KernelID    string
	SessionID   string
	ContainerID string
	Reason      lifecycle.Reason
	// ReasonVerbatim: Reason is the manager's own str from destroy_kernel,
	// which goes back in kernel_terminated as it came (a plain str, not the
	// enum), as upstream echoes it. Otherwise the agent chose Reason.
	ReasonVerbatim bool
	// ExitCode is the container's exit code, or -1 when unknown.
	ExitCode int
	// OOMKilled: the kernel's cgroup OOM killer ended the container.
	OOMKilled bool
}

// DefaultRunnerIdle is how long a kernel's input connection to its runner
// stays open without a request: long enough that an interactive session's
// next execute finds it open, short enough that idle kernels hold none.
const DefaultRunnerIdle = time.Minute

// dialRunner connects to a runner's input and output ports on loopback.
func (m *Manager) dialRunner(inPort, outPort int) (*runnerclient.Client, error) {
	return runnerclient.Dial(net127(inPort), net127(outPort), runnerclient.Options{PushIdle: m.cfg.RunnerIdle, OnPushClosed: m.cfg.OnRunnerIdle})
}

// DefaultRunnerPath is baiagent-kernel-runner beside the running agent.
func DefaultRunnerPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate kernel runner: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), "baiagent-kernel-runner"), nil
}

type state int

const (
	stateCreating state = iota
	stateRunning
	stateTerminating
	// stateRestarting: restart_kernel is replacing the container; events
	// about the old one are not the kernel's end.
	stateRestarting
)

func (s state) String() string {
	return [...]string{"creating", "running", "terminating", "restarting"}[s]
}

// busy is a state whose container may come and go without the kernel
// ending.
func (s state) busy() bool { return s == stateCreating || s == stateRestarting }

// kernel is one registry entry.
type kernel struct {
	id          string
	sessionID   string
	image       string
	containerID string
	dirs        scratch.Dirs
	allocation  alloc.Allocation
	recovery    scratch.Recovery
	runner      *runnerclient.Client
	createdAt   time.Time
	// uid and gid are the kernel user's: they own what uploads create.
	uid, gid int
	// blockServicePorts refuses start_service (block_service_ports).
	blockServicePorts bool
	sessionType       string
	// legacyLabels: the container is an older build's, whose
	// ai.backend.owner is not the agent id (see ownContainers).
	legacyLabels bool

	// guarded by Manager.mu
	state      state
	stopReason lifecycle.Reason
	// stopVerbatim: stopReason is the manager's str (Termination.ReasonVerbatim).
	stopVerbatim bool
	// restarted is closed when a restart_kernel of this kernel ends; calls
	// arriving meanwhile wait for it (nil when no restart runs).
	restarted chan struct{}
	// runningGen is Manager.runningGen when the kernel last became
	// running, with the container it has now.
	runningGen uint64

	cleanOnce   sync.Once
	cleaned     chan struct{}
	termination Termination // set before cleaned closes
}

// Manager owns the kernels of one agent. Its methods are safe for
// concurrent use.
type Manager struct {
	cfg  Config
	log  zerolog.Logger
	sem  chan struct{}
	uid  int
	gid  int
	mu   sync.Mutex
	reg  map[string]*kernel
	ooms map[string]bool // container id -> an oom event was seen
	// runningGen counts transitions to running (guarded by mu):
	// reconciliation judges only kernels that were running, with their
	// container, before it listed the containers.
	runningGen uint64
	// recovered is set by Recover; until then reconciliation must not take
	// the previous run's kernels for strangers.
	recovered bool
	// scratch is how each kernel's scratch dir is made, fixed by New.
	scratch scratch.Spec
}

// New checks the configuration and makes a manager with an empty registry;
// call Recover before serving to take back running kernels.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.AgentID == "":
		return nil, errors.New("kernel manager: agent id is empty")
	case cfg.ScratchRoot == "":
		return nil, errors.New("kernel manager: scratch root is empty")
	case cfg.Engine == nil || cfg.Allocator == nil || cfg.Plugins == nil || cfg.Ports == nil:
		return nil, errors.New("kernel manager: engine, allocator, plugins and ports are required")
	}
	if st, err := os.Stat(cfg.RunnerPath); err != nil || st.IsDir() {
		return nil, fmt.Errorf("kernel manager: kernel runner binary %q: %w", cfg.RunnerPath, errors.Join(err, errIf(err == nil, "is a directory")))
	}
	root, err := filepath.Abs(cfg.ScratchRoot)
	if err != nil {
		return nil, fmt.Errorf("kernel manager: scratch root: %w", err)
	}
	cfg.ScratchRoot = root
	if cfg.CreationConcurrency <= 0 {
		cfg.CreationConcurrency = 4
	}
	if cfg.RunnerIdle <= 0 {
		cfg.RunnerIdle = DefaultRunnerIdle
	}
	if cfg.RunnerStartTimeout <= 0 {
		cfg.RunnerStartTimeout = 60 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	spec, err := scratchSpec(cfg)
	if err != nil {
		return nil, err
	}
	uid, gid := cfg.KernelUID, cfg.KernelGID
	if uid < 0 {
		uid = os.Getuid()
	}
	if gid < 0 {
		gid = os.Getgid()
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.CreationConcurrency),
		uid: uid, gid: gid, reg: map[string]*kernel{}, ooms: map[string]bool{}, scratch: spec,
	}, nil
}

// scratchSpec settles how scratch dirs are made: a hostfile scratch needs
// mkfs.ext4, and a hostdir scratch-size becomes a project quota where the
// scratch root's filesystem enforces one, or a warning that it is only
// advertised (upstream never enforces it for hostdir).
func scratchSpec(cfg Config) (scratch.Spec, error) {
	spec := scratch.Spec{Kind: cfg.ScratchType, Size: cfg.ScratchSize}
	switch cfg.ScratchType {
	case "", scratch.HostDir:
		spec.Kind = scratch.HostDir
		if cfg.ScratchSize > 0 {
			limit := scratch.PlanSizeLimit(scratch.HostDir, cfg.ScratchRoot, cfg.ScratchSize)
			spec.Quota = limit.Quota
			if !limit.Enforced {
				cfg.Logger.Warn().Str("scratch_root", cfg.ScratchRoot).Msg("container.scratch-size: " + limit.Detail)
			}
		}
	case scratch.HostFile:
		if cfg.ScratchSize <= 0 {
			return scratch.Spec{}, errors.New("kernel manager: scratch type hostfile needs a scratch size")
		}
		if _, err := scratch.MkfsExt4(); err != nil {
			return scratch.Spec{}, fmt.Errorf("kernel manager: scratch type hostfile: %w", err)
		}
	case scratch.Memory:
	default:
		return scratch.Spec{}, fmt.Errorf("kernel manager: scratch type %q is not supported", cfg.ScratchType)
	}
	return spec, nil
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}

// Info describes one kernel for listings and the RPC layer.
type Info struct {
	KernelID     string
	SessionID    string
	ContainerID  string
	Image        string
	State        string
	Allocation   alloc.Allocation
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []scratch.ServicePort
	ScratchDir   string
	CreatedAt    time.Time
	// BlockServicePorts: start_service answers "operation blocked".
	BlockServicePorts bool
	// SessionType is the creation's session_type ("" when not known).
	SessionType string
}

func (m *Manager) infoLocked(k *kernel) Info {
	return Info{
		KernelID: k.id, SessionID: k.sessionID, ContainerID: k.containerID, Image: k.image,
		State: k.state.String(), Allocation: k.allocation.Clone(),
		ReplInPort: k.recovery.ReplInPort, ReplOutPort: k.recovery.ReplOutPort,
		ServicePorts: k.recovery.ServicePorts, ScratchDir: k.dirs.Base, CreatedAt: k.createdAt,
		BlockServicePorts: k.blockServicePorts, SessionType: k.sessionType,
	}
}

// Get returns one kernel.
func (m *Manager) Get(kernelID string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.reg[kernelID]
	if !ok {
		return Info{}, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	return m.infoLocked(k), nil
}

// List returns every kernel, sorted by id.
func (m *Manager) List() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.reg))
	for _, k := range m.reg {
		out = append(out, m.infoLocked(k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelID < out[j].KernelID })
	return out
}

// Close disconnects from every runner; the kernels keep running (an agent
// that stops does not stop its kernels, as upstream).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.reg {
		if k.runner != nil {
			_ = k.runner.Close()
		}
	}
}

// markRunningLocked makes k running with the container it has now; m.mu
// must be held.
func (m *Manager) markRunningLocked(k *kernel) {
	m.runningGen++
	k.state, k.runningGen = stateRunning, m.runningGen
}

func (m *Manager) running(ctx context.Context, kernelID string) (*kernel, error) {
	for {
		m.mu.Lock()
		k, ok := m.reg[kernelID]
		if !ok {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
		}
		if k.state == stateRestarting && k.restarted != nil {
			// As upstream, a call during restart_kernel waits for the new
			// container instead of failing.
			restarted := k.restarted
			m.mu.Unlock()
			select {
			case <-restarted:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %s is restarting: %w", ErrNotRunning, kernelID, ctx.Err())
			}
		}
		defer m.mu.Unlock()
		if k.state != stateRunning || k.runner == nil {
			return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, kernelID, k.state)
		}
		return k, nil
	}
}
