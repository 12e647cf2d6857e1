package protocol

import "fmt"

// Model services of inference sessions (upstream's start-model-service,
// kernel/base.py start_model_service).
const (
	// TypeStartModelService carries one ModelInfo (agent -> runner).
	TypeStartModelService = "start-model-service"
	// TypeModelServiceResult answers it with a ServiceResult: "started"
	// or "failed" (runner -> agent).
	TypeModelServiceResult = "model-service-result"
	// TypeModelServiceStatus reports a health change, ModelServiceStatus
	// (runner -> agent; upstream's agent ignores it).
	TypeModelServiceStatus = "model-service-status"
)

// ModelDefinition is upstream's ModelDefinition (common/config.py) as its
// model_dump(mode="json") writes it, after validation by the agent.
type ModelDefinition struct {
	Models []ModelInfo `json:"models"`
}

// ModelInfo is one model (upstream's ModelConfig); metadata is validated
// by the agent and not sent on.
type ModelInfo struct {
	Name      string        `json:"name"`
	ModelPath string        `json:"model_path"`
	Service   *ModelService `json:"service"`
}

// ModelService is upstream's ModelServiceConfig.
type ModelService struct {
	PreStartActions []PreStartAction `json:"pre_start_actions"`
	// StartCommand nil: the image's Cmd (the agent fills it in).
	StartCommand *string `json:"start_command"`
	// Shell nil or "": the command is shlex-split, not run by a shell.
	Shell       *string           `json:"shell"`
	Port        int               `json:"port"`
	HealthCheck *ModelHealthCheck `json:"health_check"`
}

// PreStartAction is one of the service-definition prestart actions; Ref,
// an extra key pydantic keeps, stores its value as a variable.
type PreStartAction struct {
	Action string         `json:"action"`
	Args   map[string]any `json:"args"`
	Ref    *string        `json:"ref,omitempty"`
}

// ModelHealthCheck is upstream's ModelHealthCheck; durations in seconds.
type ModelHealthCheck struct {
	Enable             bool    `json:"enable"`
	Interval           float64 `json:"interval"`
	Path               string  `json:"path"`
	MaxRetries         int     `json:"max_retries"`
	MaxWaitTime        float64 `json:"max_wait_time"`
	ExpectedStatusCode int     `json:"expected_status_code"`
	InitialDelay       float64 `json:"initial_delay"`
}

// ServiceName is the model service's name and service-port name,
// "<model>-<port>".
func (m ModelInfo) ServiceName() string {
	if m.Service == nil {
		return m.Name
	}
	return fmt.Sprintf("%s-%d", m.Name, m.Service.Port)
}

// ModelServiceStatus is a model-service-status payload.
type ModelServiceStatus struct {
	ModelName string `json:"model_name"`
	IsHealthy bool   `json:"is_healthy"`
}

// DecodeModelInfo decodes a start-model-service payload.
func DecodeModelInfo(payload []byte) (ModelInfo, error) {
	var m ModelInfo
	if err := DecodeJSON(payload, &m); err != nil {
		return ModelInfo{}, err
	}
	if m.Service != nil && (m.Service.Port <= 1 || m.Service.Port > 65535) {
		return ModelInfo{}, fmt.Errorf("%w: model %q: port %d out of range", ErrMalformed, m.Name, m.Service.Port)
	}
	return m, nil
}
