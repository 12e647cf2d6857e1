// Package protocol is the kernel runner protocol of upstream's
// ai.backend.kernel (spec §5): the agent PUSHes to the runner's PULL socket
// on container port 2000 and PULLs from its PUSH socket on port 2001. Every
// message is two frames, [type, payload]. Both the runner inside the
// container and the agent's client use this package, so the two sides agree
// on names and payload shapes by construction.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Container ports the runner binds.
const (
	InputPort  = 2000 // PULL: requests from the agent
	OutputPort = 2001 // PUSH: output and replies to the agent
	// SSHDPort is where the runner's intrinsic sshd listens (upstream's
	// dropbear on 2200).
	SSHDPort = 2200
)

// SSHDService names the intrinsic sshd in start-service and service ports.
const SSHDService = "sshd"

// Requests, agent -> runner.
const (
	TypeCode            = "code"  // query mode: run code in the persistent interpreter
	TypeInput           = "input" // a line for the running code's stdin
	TypeClean           = "clean" // batch mode steps, each a shell command
	TypeBuild           = "build"
	TypeExec            = "exec"
	TypeComplete        = "complete"
	TypeInterrupt       = "interrupt"
	TypeStatus          = "status"
	TypeEvent           = "event"
	TypeStartService    = "start-service"
	TypeShutdownService = "shutdown-service"
	TypeGetApps         = "get-apps"
)

// Output and replies, runner -> agent.
const (
	TypeStdout         = "stdout"
	TypeStderr         = "stderr"
	TypeMedia          = "media"
	TypeHTML           = "html"
	TypeLog            = "log"
	TypeCompletion     = "completion"
	TypeWaitingInput   = "waiting-input"
	TypeFinished       = "finished"
	TypeBuildFinished  = "build-finished"
	TypeCleanFinished  = "clean-finished"
	TypeStatusReply    = "status"
	TypeServiceResult  = "service-result"
	TypeAppsResult     = "apps-result"
	TypeShutdownResult = "shutdown-service-result"
)

// MaxPayload bounds one payload. Code cells and console chunks are far
// smaller; a peer sending more is broken or hostile.
const MaxPayload = 64 << 20

// ErrMalformed is returned for frames that are not a runner message.
var ErrMalformed = errors.New("malformed runner message")

// Message is one decoded [type, payload] message.
type Message struct {
	Type    string
	Payload []byte
}

// Frames returns the two wire frames.
func (m Message) Frames() [][]byte {
	return [][]byte{[]byte(m.Type), m.Payload}
}

// Decode checks the frames of one multipart message. Upstream always sends
// two frames; a lone type frame is accepted with an empty payload because
// some senders drop an empty last frame.
func Decode(frames [][]byte) (Message, error) {
	switch {
	case len(frames) == 0 || len(frames) > 2:
		return Message{}, fmt.Errorf("%w: %d frames, want 2", ErrMalformed, len(frames))
	case len(frames[0]) == 0 || len(frames[0]) > 64:
		return Message{}, fmt.Errorf("%w: message type of %d bytes", ErrMalformed, len(frames[0]))
	case !isToken(frames[0]):
		return Message{}, fmt.Errorf("%w: message type %q is not a lower-case token", ErrMalformed, frames[0])
	}
	m := Message{Type: string(frames[0])}
	if len(frames) == 2 {
		if len(frames[1]) > MaxPayload {
			return Message{}, fmt.Errorf("%w: %s payload of %d bytes exceeds %d", ErrMalformed, m.Type, len(frames[1]), MaxPayload)
		}
		m.Payload = frames[1]
	}
	return m, nil
}

func isToken(b []byte) bool {
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// ExitStatus is the payload of finished, build-finished and clean-finished.
type ExitStatus struct {
	ExitCode int `json:"exitCode"`
}

// WaitingInput is the payload of waiting-input.
type WaitingInput struct {
	IsPassword bool `json:"is_password"`
}

// Status is the reply to a status request.
type Status struct {
	// StartedAt is when the runner started, in Unix seconds.
	StartedAt float64 `json:"started_at"`
	// Runtime is the runtime the runner serves ("python", "shell").
	Runtime string `json:"runtime"`
	// Busy is true while a code or batch run is in progress.
	Busy bool `json:"busy"`
	// BatchExit is the exit code of the last finished batch exec step;
	// absent while one runs and before the first (a baiagent extension).
	BatchExit *int `json:"batch_exit,omitempty"`
}

// CompletionRequest is the payload of complete (upstream's
// {"code", "options": {"row", "col", "line", "post"}}).
type CompletionRequest struct {
	Code    string            `json:"code"`
	Options CompletionOptions `json:"options"`
}

// CompletionOptions locate the cursor.
type CompletionOptions struct {
	Row  int    `json:"row"`
	Col  int    `json:"col"`
	Line string `json:"line"`
	Post string `json:"post"`
}

// ServiceRequest is the payload of start-service: upstream's service info
// plus, as an extension, an explicit command for services the image does
// not define under /etc/backend.ai/service-defs.
type ServiceRequest struct {
	Name     string            `json:"name"`
	Port     int               `json:"port"`
	Ports    []int             `json:"ports,omitempty"`
	Protocol string            `json:"protocol,omitempty"`
	Options  map[string]any    `json:"options,omitempty"`
	Command  []string          `json:"command,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
}

// ServiceResult is the reply to start-service: status is "started",
// "running" (it already was) or "failed".
type ServiceResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// AppsResult is the reply to get-apps.
type AppsResult struct {
	Status string `json:"status"`
	Data   []App  `json:"data"`
}

// App is one service the image can start: upstream's get_apps entry.
type App struct {
	Name             string   `json:"name"`
	URLTemplate      string   `json:"url_template,omitempty"`
	AllowedArguments []string `json:"allowed_arguments,omitempty"`
	AllowedEnvs      []string `json:"allowed_envs,omitempty"`
}

// DecodeJSON decodes a JSON payload into v, refusing trailing data. An empty
// payload decodes as an empty object, as upstream sends b"" for "no options".
func DecodeJSON(payload []byte, v any) error {
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	if !utf8.Valid(payload) {
		return fmt.Errorf("%w: payload is not UTF-8", ErrMalformed)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// DecodeServiceRequest decodes and checks a start-service payload.
func DecodeServiceRequest(payload []byte) (ServiceRequest, error) {
	var req ServiceRequest
	if err := DecodeJSON(payload, &req); err != nil {
		return ServiceRequest{}, err
	}
	if req.Name == "" {
		return ServiceRequest{}, fmt.Errorf("%w: service request without a name", ErrMalformed)
	}
	for _, p := range append([]int{req.Port}, req.Ports...) {
		if p < 0 || p > 65535 {
			return ServiceRequest{}, fmt.Errorf("%w: service %q: port %d out of range", ErrMalformed, req.Name, p)
		}
	}
	return req, nil
}

// DecodeExitStatus decodes a *-finished payload; an empty payload is exit 0.
func DecodeExitStatus(payload []byte) (ExitStatus, error) {
	var st ExitStatus
	err := DecodeJSON(payload, &st)
	return st, err
}

// MustJSON encodes v, which must be one of this package's payload types.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("protocol: encoding %T: %v", v, err))
	}
	return b
}
