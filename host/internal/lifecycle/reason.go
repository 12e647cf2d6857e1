// Package lifecycle names why a kernel or a batch session ended: one
// Reason type shared by the kernel manager, the RPC layer, the events and
// the CLI. Its members are those of the 26.8 manager's
// KernelLifecycleEventReason (common/events/event_types/kernel/types.py):
// kernel_terminated, session_success and session_failure carry the
// pickled enum, and the manager's unpickling raises on any other value.
package lifecycle

// Reason is a KernelLifecycleEventReason value. A Reason outside the
// enum exists only as the manager's own destroy_kernel string, which is
// echoed back as a plain str (kernel.Termination.ReasonVerbatim).
type Reason string

// The enum's members, in upstream's order.
const (
	AgentTermination           Reason = "agent-termination"
	AlreadyTerminated          Reason = "already-terminated"
	AnomalyDetected            Reason = "anomaly-detected"
	ExecTimeout                Reason = "exec-timeout"
	FailedToCreate             Reason = "failed-to-create"
	FailedToStart              Reason = "failed-to-start"
	ForceTerminated            Reason = "force-terminated"
	BootstrapTimeout           Reason = "bootstrap-timeout"
	HangTimeout                Reason = "hang-timeout"
	IdleTimeout                Reason = "idle-timeout"
	IdleSessionLifetime        Reason = "idle-session-lifetime"
	IdleUtilization            Reason = "idle-utilization"
	KilledByEvent              Reason = "killed-by-event"
	ServiceScaledDown          Reason = "service-scaled-down"
	NewContainerStarted        Reason = "new-container-started"
	PendingTimeout             Reason = "pending-timeout"
	Restarting                 Reason = "restarting"
	RestartTimeout             Reason = "restart-timeout"
	ResumingAgentOperation     Reason = "resuming-agent-operation"
	SelfTerminated             Reason = "self-terminated"
	TaskFailed                 Reason = "task-failed"
	TaskTimeout                Reason = "task-timeout"
	TaskCancelled              Reason = "task-cancelled"
	TaskFinished               Reason = "task-finished"
	TerminatedUnknownContainer Reason = "terminated-unknown-container"
	Unknown                    Reason = "unknown"
	UserRequested              Reason = "user-requested"
	UserPurged                 Reason = "user-purged"
	NotFoundInManager          Reason = "not-found-in-manager"
	ContainerNotFound          Reason = "container-not-found"
)

// Reasons returns every member, in upstream's order.
func Reasons() []Reason {
	return []Reason{
		AgentTermination, AlreadyTerminated, AnomalyDetected, ExecTimeout,
		FailedToCreate, FailedToStart, ForceTerminated, BootstrapTimeout,
		HangTimeout, IdleTimeout, IdleSessionLifetime, IdleUtilization,
		KilledByEvent, ServiceScaledDown, NewContainerStarted, PendingTimeout,
		Restarting, RestartTimeout, ResumingAgentOperation, SelfTerminated,
		TaskFailed, TaskTimeout, TaskCancelled, TaskFinished,
		TerminatedUnknownContainer, Unknown, UserRequested, UserPurged,
		NotFoundInManager, ContainerNotFound,
	}
}

// Member says whether r is one of the enum's values, which the manager
// can unpickle.
func (r Reason) Member() bool {
	for _, m := range Reasons() {
		if r == m {
			return true
		}
	}
	return false
}
