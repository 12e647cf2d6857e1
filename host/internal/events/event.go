// Package events sends the agent's events to the manager the way
// Backend.AI's agent does (spec §3): anycast with XADD to the "events" stream
// and, for the events the manager also fans out, PUBLISH to "events_all",
// both in Redis DB 4. Lifecycle events survive a Redis outage and an agent
// restart in an on-disk queue; heartbeats are dropped instead. Without Redis
// the events go to the log and to a ring buffer served at GET /v1/events.
package events

import (
	"time"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Event is one agent event. Args is the positional tuple a 26.8.x manager
// unpacks (event.serialize()); Body is the named-field object of the newer
// JSON encoding (event.model_dump_json() on upstream main).
type Event interface {
	Name() string
	Args() wiremsg.Tuple
	Body() wiremsg.Dict
	// Droppable events (heartbeats) are not queued while Redis is down: the
	// next one supersedes them.
	Droppable() bool
	// Broadcast events are also published on events_all, as the agent's
	// anycast_and_broadcast_event does.
	Broadcast() bool
}

// BroadcastOnly marks the events upstream only broadcasts (its
// broadcast_event: the bgtask_* events): they are published on events_all
// and not added to the anycast stream, where the manager has no consumer
// for them.
type BroadcastOnly interface {
	Event
	BroadcastOnly()
}

// Cached marks the broadcast events upstream sends with
// broadcast_event_with_cache: the published JSON is also SET under
// CacheID for CacheTTL, so that a manager that subscribes late (commit's
// cache propagator) still sees the task's last word.
type Cached interface {
	Event
	CacheID() string
}

// CacheTTL is valkey_stream's _DEFAULT_CACHE_EXPIRATION.
const CacheTTL = 300 * time.Second

// bgtaskCacheID is EventCacheDomain.BGTASK.cache_id(str(task_id)).
func bgtaskCacheID(taskID string) string { return "bgtask." + taskID }

// Reasons the agent gives for its own start and stop.
const (
	ReasonSelfStarted = "self-started"
	ReasonShutdown    = "shutdown"
)

// AgentStarted is agent_started: (reason,).
type AgentStarted struct{ Reason string }

func (AgentStarted) Name() string          { return "agent_started" }
func (e AgentStarted) Args() wiremsg.Tuple { return wiremsg.Tuple{e.Reason} }
func (e AgentStarted) Body() wiremsg.Dict  { return wiremsg.Dict{{Key: "reason", Value: e.Reason}} }
func (AgentStarted) Droppable() bool       { return false }
func (AgentStarted) Broadcast() bool       { return false }

// AgentTerminated is agent_terminated: (reason,).
type AgentTerminated struct{ Reason string }

func (AgentTerminated) Name() string          { return "agent_terminated" }
func (e AgentTerminated) Args() wiremsg.Tuple { return wiremsg.Tuple{e.Reason} }
func (e AgentTerminated) Body() wiremsg.Dict  { return wiremsg.Dict{{Key: "reason", Value: e.Reason}} }
func (AgentTerminated) Droppable() bool       { return false }
func (AgentTerminated) Broadcast() bool       { return false }

// AgentError is agent_error: (message, traceback, user, context_env,
// severity). Severity is a LogLevel value such as "ERROR".
type AgentError struct {
	Message    string
	Traceback  string // "" is sent as None
	ContextEnv map[string]string
	Severity   string // "" means "ERROR"
}

func (AgentError) Name() string { return "agent_error" }

func (e AgentError) fields() (traceback any, contextEnv wiremsg.Dict, severity string) {
	if e.Traceback != "" {
		traceback = e.Traceback
	}
	contextEnv = wiremsg.Dict{}
	for _, k := range sortedKeys(e.ContextEnv) {
		contextEnv = append(contextEnv, wiremsg.KV{Key: k, Value: e.ContextEnv[k]})
	}
	severity = e.Severity
	if severity == "" {
		severity = "ERROR"
	}
	return traceback, contextEnv, severity
}

func (e AgentError) Args() wiremsg.Tuple {
	tb, env, severity := e.fields()
	return wiremsg.Tuple{e.Message, tb, nil, env, severity}
}

func (e AgentError) Body() wiremsg.Dict {
	tb, env, severity := e.fields()
	return wiremsg.Dict{
		{Key: "message", Value: e.Message}, {Key: "traceback", Value: tb}, {Key: "user", Value: nil},
		{Key: "context_env", Value: env}, {Key: "severity", Value: severity},
	}
}
func (AgentError) Droppable() bool { return false }
func (AgentError) Broadcast() bool { return false }

// AgentHeartbeat is agent_heartbeat: (agent_info,). The two forms of
// AgentInfo differ (26.8.x sends a pickled ResourceSlot and the image list,
// main sends slot entries), so the heartbeat package builds both.
type AgentHeartbeat struct {
	// ArgsInfo is AgentInfo.model_dump() as 26.8.x packs it.
	ArgsInfo wiremsg.Dict
	// BodyInfo is AgentInfo as main's model_dump_json() writes it.
	BodyInfo wiremsg.Dict
}

func (AgentHeartbeat) Name() string          { return "agent_heartbeat" }
func (e AgentHeartbeat) Args() wiremsg.Tuple { return wiremsg.Tuple{e.ArgsInfo} }
func (e AgentHeartbeat) Body() wiremsg.Dict {
	return wiremsg.Dict{{Key: "agent_info", Value: e.BodyInfo}}
}
func (AgentHeartbeat) Droppable() bool { return true }
func (AgentHeartbeat) Broadcast() bool { return false }

// kernelCreation is the shape of kernel_preparing/pulling/creating/started:
// (kernel_id, session_id, reason, creation_info).
type kernelCreation struct {
	KernelID     string
	SessionID    string
	Reason       string
	CreationInfo wiremsg.Dict // only kernel_started carries one
}

func (e kernelCreation) args() wiremsg.Tuple {
	info := e.CreationInfo
	if info == nil {
		info = wiremsg.Dict{}
	}
	return wiremsg.Tuple{e.KernelID, e.SessionID, e.Reason, info}
}

func (e kernelCreation) body(withInfo bool) wiremsg.Dict {
	m := wiremsg.Dict{{Key: "kernel_id", Value: e.KernelID}, {Key: "session_id", Value: e.SessionID}, {Key: "reason", Value: e.Reason}}
	if withInfo {
		info := e.CreationInfo
		if info == nil {
			info = wiremsg.Dict{}
		}
		m = append(m, wiremsg.KV{Key: "creation_info", Value: info})
	}
	return m
}

// KernelPreparing is kernel_preparing.
type KernelPreparing kernelCreation

// KernelPulling is kernel_pulling; Reason is the image's canonical name.
type KernelPulling kernelCreation

// KernelCreating is kernel_creating.
type KernelCreating kernelCreation

// KernelStarted is kernel_started, with the creation info.
type KernelStarted kernelCreation

func (KernelPreparing) Name() string          { return "kernel_preparing" }
func (e KernelPreparing) Args() wiremsg.Tuple { return kernelCreation(e).args() }
func (e KernelPreparing) Body() wiremsg.Dict  { return kernelCreation(e).body(false) }
func (KernelPreparing) Droppable() bool       { return false }
func (KernelPreparing) Broadcast() bool       { return true }
func (KernelPulling) Name() string            { return "kernel_pulling" }
func (e KernelPulling) Args() wiremsg.Tuple   { return kernelCreation(e).args() }
func (e KernelPulling) Body() wiremsg.Dict    { return kernelCreation(e).body(false) }
func (KernelPulling) Droppable() bool         { return false }
func (KernelPulling) Broadcast() bool         { return true }
func (KernelCreating) Name() string           { return "kernel_creating" }
func (e KernelCreating) Args() wiremsg.Tuple  { return kernelCreation(e).args() }
func (e KernelCreating) Body() wiremsg.Dict   { return kernelCreation(e).body(false) }
func (KernelCreating) Droppable() bool        { return false }
func (KernelCreating) Broadcast() bool        { return true }
func (KernelStarted) Name() string            { return "kernel_started" }
func (e KernelStarted) Args() wiremsg.Tuple   { return kernelCreation(e).args() }
func (e KernelStarted) Body() wiremsg.Dict    { return kernelCreation(e).body(true) }
func (KernelStarted) Droppable() bool         { return false }
func (KernelStarted) Broadcast() bool         { return true }

// KernelTerminated is kernel_terminated: (kernel_id, session_id, reason,
// exit_code). A reason the agent chose is a KernelLifecycleEventReason
// value such as "self-terminated", sent as the pickled enum member; a
// reason the manager passed to destroy_kernel as a str (ROUTE_TERMINATION,
// say) goes back as that plain str (ReasonVerbatim), as upstream echoes it
// (agent/server.py destroy_kernel, agent/agent.py).
type KernelTerminated struct {
	KernelID       string
	SessionID      string
	Reason         lifecycle.Reason
	ReasonVerbatim bool
	ExitCode       int
}

func (KernelTerminated) Name() string { return "kernel_terminated" }
func (e KernelTerminated) Args() wiremsg.Tuple {
	var reason any = wiremsg.KernelLifecycleEventReason(string(e.Reason))
	if e.ReasonVerbatim {
		reason = string(e.Reason)
	}
	return wiremsg.Tuple{e.KernelID, e.SessionID, reason, e.ExitCode}
}
func (e KernelTerminated) Body() wiremsg.Dict {
	return wiremsg.Dict{
		{Key: "kernel_id", Value: e.KernelID}, {Key: "session_id", Value: e.SessionID},
		{Key: "reason", Value: string(e.Reason)}, {Key: "exit_code", Value: e.ExitCode},
	}
}
func (KernelTerminated) Droppable() bool { return false }
func (KernelTerminated) Broadcast() bool { return true }

// sessionResult is session_success/session_failure: (session_id, reason,
// exit_code), reason a KernelLifecycleEventReason ("task-finished", ...).
type sessionResult struct {
	SessionID string
	Reason    lifecycle.Reason
	ExitCode  int
}

func (e sessionResult) args() wiremsg.Tuple {
	return wiremsg.Tuple{e.SessionID, wiremsg.KernelLifecycleEventReason(string(e.Reason)), e.ExitCode}
}

func (e sessionResult) body() wiremsg.Dict {
	return wiremsg.Dict{{Key: "session_id", Value: e.SessionID}, {Key: "reason", Value: string(e.Reason)}, {Key: "exit_code", Value: e.ExitCode}}
}

// SessionSuccess is session_success (a batch task exited with 0).
type SessionSuccess sessionResult

// SessionFailure is session_failure.
type SessionFailure sessionResult

func (SessionSuccess) Name() string          { return "session_success" }
func (e SessionSuccess) Args() wiremsg.Tuple { return sessionResult(e).args() }
func (e SessionSuccess) Body() wiremsg.Dict  { return sessionResult(e).body() }
func (SessionSuccess) Droppable() bool       { return false }
func (SessionSuccess) Broadcast() bool       { return true }
func (SessionFailure) Name() string          { return "session_failure" }
func (e SessionFailure) Args() wiremsg.Tuple { return sessionResult(e).args() }
func (e SessionFailure) Body() wiremsg.Dict  { return sessionResult(e).body() }
func (SessionFailure) Droppable() bool       { return false }
func (SessionFailure) Broadcast() bool       { return true }

// ExecutionStarted is execution_started: (session_id,).
type ExecutionStarted struct{ SessionID string }

// ExecutionFinished is execution_finished: (session_id,).
type ExecutionFinished struct{ SessionID string }

// ExecutionTimeout is execution_timeout: (session_id,).
type ExecutionTimeout struct{ SessionID string }

func sessionOnly(id string) wiremsg.Dict { return wiremsg.Dict{{Key: "session_id", Value: id}} }

func (ExecutionStarted) Name() string           { return "execution_started" }
func (e ExecutionStarted) Args() wiremsg.Tuple  { return wiremsg.Tuple{e.SessionID} }
func (e ExecutionStarted) Body() wiremsg.Dict   { return sessionOnly(e.SessionID) }
func (ExecutionStarted) Droppable() bool        { return false }
func (ExecutionStarted) Broadcast() bool        { return false }
func (ExecutionFinished) Name() string          { return "execution_finished" }
func (e ExecutionFinished) Args() wiremsg.Tuple { return wiremsg.Tuple{e.SessionID} }
func (e ExecutionFinished) Body() wiremsg.Dict  { return sessionOnly(e.SessionID) }
func (ExecutionFinished) Droppable() bool       { return false }
func (ExecutionFinished) Broadcast() bool       { return false }
func (ExecutionTimeout) Name() string           { return "execution_timeout" }
func (e ExecutionTimeout) Args() wiremsg.Tuple  { return wiremsg.Tuple{e.SessionID} }
func (e ExecutionTimeout) Body() wiremsg.Dict   { return sessionOnly(e.SessionID) }
func (ExecutionTimeout) Droppable() bool        { return false }
func (ExecutionTimeout) Broadcast() bool        { return false }

// ImagePullStarted is image_pull_started: (image, agent_id, timestamp[,
// image_ref]); the ref is left out when nil, as upstream does.
type ImagePullStarted struct {
	Image     string
	AgentID   string
	Timestamp float64 // Unix seconds
	ImageRef  *wiremsg.ImageRef
}

func (ImagePullStarted) Name() string { return "image_pull_started" }
func (e ImagePullStarted) Args() wiremsg.Tuple {
	t := wiremsg.Tuple{e.Image, e.AgentID, e.Timestamp}
	if e.ImageRef != nil {
		t = append(t, *e.ImageRef)
	}
	return t
}
func (e ImagePullStarted) Body() wiremsg.Dict {
	return wiremsg.Dict{
		{Key: "image", Value: e.Image}, {Key: "agent_id", Value: e.AgentID},
		{Key: "timestamp", Value: e.Timestamp}, {Key: "image_ref", Value: imageRefJSON(e.ImageRef)},
	}
}
func (ImagePullStarted) Droppable() bool { return false }
func (ImagePullStarted) Broadcast() bool { return false }

// ImagePullFinished is image_pull_finished: (image, agent_id, timestamp,
// msg, image_ref), always five items.
type ImagePullFinished struct {
	Image     string
	AgentID   string
	Timestamp float64
	Msg       string // "" is sent as None; upstream says "Image already exists" when no pull was needed
	ImageRef  *wiremsg.ImageRef
}

func (ImagePullFinished) Name() string { return "image_pull_finished" }
func (e ImagePullFinished) Args() wiremsg.Tuple {
	var ref any
	if e.ImageRef != nil {
		ref = *e.ImageRef
	}
	return wiremsg.Tuple{e.Image, e.AgentID, e.Timestamp, noneIfEmpty(e.Msg), ref}
}
func (e ImagePullFinished) Body() wiremsg.Dict {
	return wiremsg.Dict{
		{Key: "image", Value: e.Image}, {Key: "agent_id", Value: e.AgentID}, {Key: "timestamp", Value: e.Timestamp},
		{Key: "msg", Value: noneIfEmpty(e.Msg)}, {Key: "image_ref", Value: imageRefJSON(e.ImageRef)},
	}
}
func (ImagePullFinished) Droppable() bool { return false }
func (ImagePullFinished) Broadcast() bool { return false }

// ImagePullFailed is image_pull_failed: (image, agent_id, msg[, image_ref]).
type ImagePullFailed struct {
	Image    string
	AgentID  string
	Msg      string
	ImageRef *wiremsg.ImageRef
}

func (ImagePullFailed) Name() string { return "image_pull_failed" }
func (e ImagePullFailed) Args() wiremsg.Tuple {
	t := wiremsg.Tuple{e.Image, e.AgentID, e.Msg}
	if e.ImageRef != nil {
		t = append(t, *e.ImageRef)
	}
	return t
}
func (e ImagePullFailed) Body() wiremsg.Dict {
	return wiremsg.Dict{
		{Key: "image", Value: e.Image}, {Key: "agent_id", Value: e.AgentID},
		{Key: "msg", Value: e.Msg}, {Key: "image_ref", Value: imageRefJSON(e.ImageRef)},
	}
}
func (ImagePullFailed) Droppable() bool { return false }
func (ImagePullFailed) Broadcast() bool { return false }

func noneIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// imageRefJSON is the ImageRef dataclass as pydantic dumps it to JSON.
func imageRefJSON(ref *wiremsg.ImageRef) any {
	if ref == nil {
		return nil
	}
	return wiremsg.Dict{
		{Key: "name", Value: ref.Name}, {Key: "project", Value: ref.Project}, {Key: "tag", Value: ref.Tag},
		{Key: "registry", Value: ref.Registry}, {Key: "architecture", Value: ref.Architecture},
		{Key: "is_local", Value: ref.IsLocal},
	}
}

// Background task events, sent for the agent's background tasks
// (check_and_pull's pulls, commit). They are broadcast-only and cached
// upstream (BaseBgtaskEvent through broadcast_event_with_cache); TaskID is
// the task's UUID in its dashed form, as str(task_id).

// BgtaskUpdated is bgtask_updated: (task_id, current_progress,
// total_progress, message). The agent sends it once as a task starts, with
// message "Task started" and progress 0 of 0; upstream's ProgressReporter
// sends Python ints there, so these travel as msgpack ints.
type BgtaskUpdated struct {
	TaskID          string
	CurrentProgress int64
	TotalProgress   int64
	Message         string // "" is sent as None
}

func (BgtaskUpdated) Name() string { return "bgtask_updated" }
func (e BgtaskUpdated) Args() wiremsg.Tuple {
	return wiremsg.Tuple{e.TaskID, e.CurrentProgress, e.TotalProgress, noneIfEmpty(e.Message)}
}
func (e BgtaskUpdated) Body() wiremsg.Dict {
	return wiremsg.Dict{
		{Key: "task_id", Value: e.TaskID}, {Key: "current_progress", Value: e.CurrentProgress},
		{Key: "total_progress", Value: e.TotalProgress}, {Key: "message", Value: noneIfEmpty(e.Message)},
	}
}
func (BgtaskUpdated) Droppable() bool   { return false }
func (BgtaskUpdated) Broadcast() bool   { return true }
func (BgtaskUpdated) BroadcastOnly()    {}
func (e BgtaskUpdated) CacheID() string { return bgtaskCacheID(e.TaskID) }

// bgtaskResult is the shape of bgtask_done, bgtask_failed and
// bgtask_cancelled (BaseBgtaskDoneEvent): (task_id, message).
type bgtaskResult struct {
	TaskID  string
	Message string // "" is sent as None
}

func (e bgtaskResult) args() wiremsg.Tuple { return wiremsg.Tuple{e.TaskID, noneIfEmpty(e.Message)} }
func (e bgtaskResult) body() wiremsg.Dict {
	return wiremsg.Dict{{Key: "task_id", Value: e.TaskID}, {Key: "message", Value: noneIfEmpty(e.Message)}}
}

// BgtaskDone is bgtask_done: the task finished; upstream's pull task
// returns None, so Message is empty.
type BgtaskDone bgtaskResult

// BgtaskFailed is bgtask_failed: the task raised; Message says why.
type BgtaskFailed bgtaskResult

// BgtaskCancelled is bgtask_cancelled: the task was cancelled (the agent
// shut down under it); upstream's message is BgtaskCancelledMessage.
type BgtaskCancelled bgtaskResult

// BgtaskCancelledMessage is the message upstream's _observe_bgtask sends
// with bgtask_cancelled.
const BgtaskCancelledMessage = "Task cancelled"

func (BgtaskDone) Name() string               { return "bgtask_done" }
func (e BgtaskDone) Args() wiremsg.Tuple      { return bgtaskResult(e).args() }
func (e BgtaskDone) Body() wiremsg.Dict       { return bgtaskResult(e).body() }
func (BgtaskDone) Droppable() bool            { return false }
func (BgtaskDone) Broadcast() bool            { return true }
func (BgtaskDone) BroadcastOnly()             {}
func (e BgtaskDone) CacheID() string          { return bgtaskCacheID(e.TaskID) }
func (BgtaskFailed) Name() string             { return "bgtask_failed" }
func (e BgtaskFailed) Args() wiremsg.Tuple    { return bgtaskResult(e).args() }
func (e BgtaskFailed) Body() wiremsg.Dict     { return bgtaskResult(e).body() }
func (BgtaskFailed) Droppable() bool          { return false }
func (BgtaskFailed) Broadcast() bool          { return true }
func (BgtaskFailed) BroadcastOnly()           {}
func (e BgtaskFailed) CacheID() string        { return bgtaskCacheID(e.TaskID) }
func (BgtaskCancelled) Name() string          { return "bgtask_cancelled" }
func (e BgtaskCancelled) Args() wiremsg.Tuple { return bgtaskResult(e).args() }
func (e BgtaskCancelled) Body() wiremsg.Dict  { return bgtaskResult(e).body() }
func (BgtaskCancelled) Droppable() bool       { return false }
func (BgtaskCancelled) Broadcast() bool       { return true }
func (BgtaskCancelled) BroadcastOnly()        {}
func (e BgtaskCancelled) CacheID() string     { return bgtaskCacheID(e.TaskID) }
