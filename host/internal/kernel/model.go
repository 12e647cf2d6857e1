package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kballard/go-shellquote"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// SessionTypeInference is the session_type of a model-serving session.
const SessionTypeInference = "inference"

// Errors of an inference session's creation, named as upstream's
// (agent/errors/agent.py, common/exception.py).
var (
	ErrModelFolderNotSpecified = errors.New("at least one model virtual folder must be specified")
	ErrModelDefinitionNotFound = errors.New("model definition not inlined in kernel internal_data")
	ErrModelDefinitionEmpty    = errors.New("model definition is empty")
	ErrModelDefinitionInvalid  = errors.New("invalid model definition")
)

// Upstream's ModelHealthCheck and ModelServiceConfig defaults
// (common/config.py).
const (
	defaultModelShell               = "/bin/bash"
	defaultHealthInterval           = 10.0
	defaultHealthPath               = "/health"
	defaultHealthMaxRetries         = 10
	defaultHealthMaxWaitTime        = 15.0
	defaultHealthExpectedStatusCode = 200
	defaultHealthInitialDelay       = 60.0
)

// modelErrors collects pydantic-style field errors ("models.0.service.port:
// Input should be greater than 1"), all of them, as a ValidationError lists.
type modelErrors []string

func (e *modelErrors) add(loc []string, format string, args ...any) {
	*e = append(*e, strings.Join(loc, ".")+": "+fmt.Sprintf(format, args...))
}

func at(loc []string, more ...string) []string {
	return append(append([]string(nil), loc...), more...)
}

// DecodeModelDefinition validates v (internal_data.model_definition, as
// JSON-like values: maps, lists, strings, numbers, bools, nil) as upstream's
// ModelDefinition.model_validate: snake_case names or their kebab-case
// aliases, extra keys allowed, pydantic's lax coercions (integral floats
// and numeric strings for numbers, "yes"/"no" and 0/1 for bools), the
// command/start_command compatibility of model_service_start_command_compat.py.
// Failures wrap ErrModelDefinitionInvalid and name every bad field; no
// models is ErrModelDefinitionEmpty.
func DecodeModelDefinition(v any) (protocol.ModelDefinition, error) {
	var errs modelErrors
	var def protocol.ModelDefinition
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(nil, "Input should be a valid dictionary or instance of ModelDefinition")
	} else if raw, present := field(m, "models"); present {
		list, ok := raw.([]any)
		if !ok {
			errs.add([]string{"models"}, "Input should be a valid list")
		}
		for i, item := range list {
			def.Models = append(def.Models, decodeModel(&errs, []string{"models", strconv.Itoa(i)}, item))
		}
	}
	if len(errs) > 0 {
		return protocol.ModelDefinition{}, fmt.Errorf("%w: %d validation error(s) for ModelDefinition: %s",
			ErrModelDefinitionInvalid, len(errs), strings.Join(errs, "; "))
	}
	if len(def.Models) == 0 {
		return protocol.ModelDefinition{}, ErrModelDefinitionEmpty
	}
	return def, nil
}

// field reads a key by its name or its kebab-case alias (the alias first,
// as pydantic tries it first).
func field(m map[string]any, name string) (any, bool) {
	if alias := strings.ReplaceAll(name, "_", "-"); alias != name {
		if v, ok := m[alias]; ok {
			return v, true
		}
	}
	v, ok := m[name]
	return v, ok
}

func decodeModel(errs *modelErrors, loc []string, v any) protocol.ModelInfo {
	var out protocol.ModelInfo
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(loc, "Input should be a valid dictionary or instance of ModelConfig")
		return out
	}
	out.Name = requiredStr(errs, loc, m, "name")
	out.ModelPath = requiredStr(errs, loc, m, "model_path")
	if raw, ok := field(m, "service"); ok && raw != nil {
		out.Service = decodeService(errs, at(loc, "service"), raw)
	}
	if raw, ok := field(m, "metadata"); ok && raw != nil {
		decodeMetadata(errs, at(loc, "metadata"), raw)
	}
	return out
}

func decodeService(errs *modelErrors, loc []string, v any) *protocol.ModelService {
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(loc, "Input should be a valid dictionary or instance of ModelServiceConfig")
		return nil
	}
	m = resolveStartCommand(m)
	shell := defaultModelShell
	out := &protocol.ModelService{PreStartActions: []protocol.PreStartAction{}, Shell: &shell}
	if raw, ok := field(m, "start_command"); ok && raw != nil {
		if s, ok := raw.(string); ok {
			out.StartCommand = &s
		} else {
			errs.add(at(loc, "start_command"), "Input should be a valid string")
		}
	}
	if raw, ok := field(m, "shell"); ok {
		switch s := raw.(type) {
		case nil:
			out.Shell = nil
		case string:
			out.Shell = &s
		default:
			errs.add(at(loc, "shell"), "Input should be a valid string")
		}
	}
	if raw, ok := field(m, "port"); !ok {
		errs.add(at(loc, "port"), "Field required")
	} else if n, ok := intOf(errs, at(loc, "port"), raw); ok {
		if n <= 1 {
			errs.add(at(loc, "port"), "Input should be greater than 1")
		} else if n > 65535 {
			// Not in upstream's model; Docker refuses such a port later.
			errs.add(at(loc, "port"), "Input should be less than or equal to 65535")
		} else {
			out.Port = int(n)
		}
	}
	if raw, ok := field(m, "pre_start_actions"); ok {
		list, ok := raw.([]any)
		if !ok {
			errs.add(at(loc, "pre_start_actions"), "Input should be a valid list")
		}
		for i, item := range list {
			out.PreStartActions = append(out.PreStartActions, decodeAction(errs, at(loc, "pre_start_actions", strconv.Itoa(i)), item))
		}
	}
	if raw, ok := field(m, "health_check"); ok && raw != nil {
		out.HealthCheck = decodeHealthCheck(errs, at(loc, "health_check"), raw)
	}
	return out
}

// resolveStartCommand is upstream's resolve_model_service_start_command:
// "command" wins over start_command/start-command; a list of strings is
// shlex-joined.
func resolveStartCommand(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "command" && k != "start_command" && k != "start-command" {
			out[k] = v
		}
	}
	cmd, hasCmd := m["command"]
	if cmd == nil {
		hasCmd = false
		if v, ok := m["start_command"]; ok {
			cmd, hasCmd = v, true
		} else if v, ok := m["start-command"]; ok {
			cmd, hasCmd = v, true
		}
		if list, ok := cmd.([]any); ok {
			words := make([]string, 0, len(list))
			for _, item := range list {
				s, ok := item.(string)
				if !ok {
					words = nil
					break
				}
				words = append(words, s)
			}
			if words != nil {
				cmd = shellquote.Join(words...)
			}
		}
	}
	_, hasStart := m["start_command"]
	_, hasKebab := m["start-command"]
	if (hasCmd && cmd != nil) || hasStart || hasKebab {
		out["start_command"] = cmd
	}
	return out
}

func decodeAction(errs *modelErrors, loc []string, v any) protocol.PreStartAction {
	out := protocol.PreStartAction{Args: map[string]any{}}
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(loc, "Input should be a valid dictionary or instance of PreStartAction")
		return out
	}
	out.Action = requiredStr(errs, loc, m, "action")
	if raw, ok := field(m, "args"); ok {
		args, ok := raw.(map[string]any)
		if !ok {
			errs.add(at(loc, "args"), "Input should be a valid dictionary")
		} else {
			out.Args = args
		}
	}
	if raw, ok := m["ref"]; ok && raw != nil {
		if s, ok := raw.(string); ok {
			out.Ref = &s
		}
	}
	return out
}

func decodeHealthCheck(errs *modelErrors, loc []string, v any) *protocol.ModelHealthCheck {
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(loc, "Input should be a valid dictionary or instance of ModelHealthCheck")
		return nil
	}
	hc := &protocol.ModelHealthCheck{
		Interval: defaultHealthInterval, Path: defaultHealthPath, MaxRetries: defaultHealthMaxRetries,
		MaxWaitTime: defaultHealthMaxWaitTime, ExpectedStatusCode: defaultHealthExpectedStatusCode,
		InitialDelay: defaultHealthInitialDelay,
	}
	if raw, ok := field(m, "enable"); ok {
		if b, ok := boolOf(raw); ok {
			hc.Enable = b
		} else {
			errs.add(at(loc, "enable"), "Input should be a valid boolean")
		}
	}
	if raw, ok := field(m, "path"); ok {
		if s, ok := raw.(string); ok {
			hc.Path = s
		} else {
			errs.add(at(loc, "path"), "Input should be a valid string")
		}
	}
	for _, f := range []struct {
		name string
		dst  *float64
		min  float64 // inclusive; NaN for none
	}{{"interval", &hc.Interval, math.NaN()}, {"max_wait_time", &hc.MaxWaitTime, math.NaN()}, {"initial_delay", &hc.InitialDelay, 0}} {
		if raw, ok := field(m, f.name); ok {
			if x, ok := floatOf(errs, at(loc, f.name), raw); ok {
				if !math.IsNaN(f.min) && x < f.min {
					errs.add(at(loc, f.name), "Input should be greater than or equal to %g", f.min)
				} else {
					*f.dst = x
				}
			}
		}
	}
	if raw, ok := field(m, "max_retries"); ok {
		if n, ok := intOf(errs, at(loc, "max_retries"), raw); ok {
			hc.MaxRetries = int(n)
		}
	}
	if raw, ok := field(m, "expected_status_code"); ok {
		if n, ok := intOf(errs, at(loc, "expected_status_code"), raw); ok {
			if n <= 100 {
				errs.add(at(loc, "expected_status_code"), "Input should be greater than 100")
			} else {
				hc.ExpectedStatusCode = int(n)
			}
		}
	}
	return hc
}

// decodeMetadata checks ModelMetadata's field types; nothing of it is used.
func decodeMetadata(errs *modelErrors, loc []string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(loc, "Input should be a valid dictionary or instance of ModelMetadata")
		return
	}
	for _, name := range []string{"author", "title", "created", "created_at", "last_modified", "modified_at",
		"description", "task", "category", "architecture", "license"} {
		if raw, ok := field(m, name); ok && raw != nil {
			if _, ok := raw.(string); !ok {
				errs.add(at(loc, name), "Input should be a valid string")
			}
		}
	}
	if raw, ok := field(m, "version"); ok && raw != nil {
		switch x := raw.(type) {
		case string, int64, int:
		case float64:
			if x != math.Trunc(x) {
				errs.add(at(loc, "version"), "Input should be a valid integer or string")
			}
		case json.Number:
		default:
			errs.add(at(loc, "version"), "Input should be a valid integer or string")
		}
	}
	for _, name := range []string{"framework", "label"} {
		if raw, ok := field(m, name); ok && raw != nil {
			list, ok := raw.([]any)
			if !ok {
				errs.add(at(loc, name), "Input should be a valid list")
				continue
			}
			for i, item := range list {
				if _, ok := item.(string); !ok {
					errs.add(at(loc, name, strconv.Itoa(i)), "Input should be a valid string")
				}
			}
		}
	}
	if raw, ok := field(m, "min_resource"); ok && raw != nil {
		if _, ok := raw.(map[string]any); !ok {
			errs.add(at(loc, "min_resource"), "Input should be a valid dictionary")
		}
	}
}

func requiredStr(errs *modelErrors, loc []string, m map[string]any, name string) string {
	raw, ok := field(m, name)
	if !ok {
		errs.add(at(loc, name), "Field required")
		return ""
	}
	s, ok := raw.(string)
	if !ok {
		errs.add(at(loc, name), "Input should be a valid string")
	}
	return s
}

// intOf is pydantic's lax int: ints, bools, integral floats, and strings
// holding an integer.
func intOf(errs *modelErrors, loc []string, v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
		errs.add(loc, "Input should be a valid integer, got a number with a fractional part")
		return 0, false
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		if f, err := x.Float64(); err == nil {
			return intOf(errs, loc, f)
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, true
		}
		errs.add(loc, "Input should be a valid integer, unable to parse string as an integer")
		return 0, false
	}
	errs.add(loc, "Input should be a valid integer")
	return 0, false
}

// floatOf is pydantic's lax float: numbers, bools and numeric strings.
func floatOf(errs *modelErrors, loc []string, v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			return x, true
		}
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case uint64:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return floatOf(errs, loc, f)
		}
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, true
		}
		errs.add(loc, "Input should be a valid number, unable to parse string as a number")
		return 0, false
	}
	// NaN and infinities would make the agent's wait meaningless.
	errs.add(loc, "Input should be a finite number")
	return 0, false
}

// boolOf is pydantic's lax bool.
func boolOf(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		if x == 0 || x == 1 {
			return x == 1, true
		}
	case int:
		if x == 0 || x == 1 {
			return x == 1, true
		}
	case float64:
		if x == 0 || x == 1 {
			return x == 1, true
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return boolOf(f)
		}
	case string:
		switch strings.ToLower(x) {
		case "1", "on", "t", "true", "y", "yes":
			return true, true
		case "0", "off", "f", "false", "n", "no":
			return false, true
		}
	}
	return false, false
}

// DecodeModelDefinitionJSON validates a JSON document as DecodeModelDefinition.
func DecodeModelDefinitionJSON(data []byte) (protocol.ModelDefinition, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return protocol.ModelDefinition{}, fmt.Errorf("%w: %w", ErrModelDefinitionInvalid, err)
	}
	return DecodeModelDefinition(v)
}

// ModelServicePorts appends each model service's port to ports as
// upstream's _load_model_definition: "<model>-<port>", preopen, inference.
// Ports 2000 and 2001 are ErrReservedPort; a port some service (or an
// earlier model) has is ErrPortConflict; so is ttyd's, an intrinsic
// service of upstream's that our runner does not serve.
func ModelServicePorts(def protocol.ModelDefinition, ports []ServicePort) ([]ServicePort, error) {
	out := append([]ServicePort(nil), ports...)
	taken := append([]ServicePort{{Name: "ttyd", Ports: []int{TTYDPort}}}, ports...)
	for _, model := range def.Models {
		if model.Service == nil {
			continue
		}
		p := model.Service.Port
		if p == 2000 || p == 2001 {
			return nil, fmt.Errorf("%w: model %s: port 2000 and 2001 are reserved for internal use", ErrReservedPort, model.Name)
		}
		for _, sp := range taken {
			for _, cp := range sp.Ports {
				if cp == p {
					return nil, fmt.Errorf("%w: model %s: port %d overlaps with built-in service %s", ErrPortConflict, model.Name, p, sp.Name)
				}
			}
		}
		sp := ServicePort{Name: model.ServiceName(), Protocol: "preopen", Ports: []int{p}, IsInference: true}
		out, taken = append(out, sp), append(taken, sp)
	}
	return out, nil
}

// modelEnv sets BACKEND_MODEL_NAME (the first model's, unless the environ
// has one) and BACKEND_MODEL_PATH (the last model's), as upstream.
func modelEnv(env map[string]string, def protocol.ModelDefinition) {
	for _, model := range def.Models {
		if _, ok := env["BACKEND_MODEL_NAME"]; !ok {
			env["BACKEND_MODEL_NAME"] = model.Name
		}
		env["BACKEND_MODEL_PATH"] = model.ModelPath
	}
}

// legacyInferenceFlags are upstream's LegacyInferenceEnvTranslator's
// (agent/legacy_inference_env.py), in its order.
var legacyInferenceFlags = []struct{ env, flag string }{
	{"VLLM_QUANTIZATION", "--quantization"},
	{"VLLM_TP_SIZE", "--tensor-parallel-size"},
	{"VLLM_PP_SIZE", "--pipeline-parallel-size"},
	{"SGLANG_QUANTIZATION", "--quantization"},
	{"SGLANG_TP_SIZE", "--tensor-parallel-size"},
	{"SGLANG_PP_SIZE", "--pipeline-parallel-size"},
}

// LegacyInferenceArgs turns VLLM_*/SGLANG_* variables into CLI arguments:
// the flags, then VLLM_EXTRA_ARGS and SGLANG_EXTRA_ARGS shell-split.
func LegacyInferenceArgs(env map[string]string) ([]string, error) {
	var args []string
	for _, f := range legacyInferenceFlags {
		if v := env[f.env]; v != "" {
			args = append(args, f.flag, v)
		}
	}
	for _, key := range []string{"VLLM_EXTRA_ARGS", "SGLANG_EXTRA_ARGS"} {
		if v := env[key]; v != "" {
			words, err := shellquote.Split(v)
			if err != nil {
				return nil, fmt.Errorf("%w: malformed quoting in %s: %w", ErrInvalidRequest, key, err)
			}
			args = append(args, words...)
		}
	}
	return args, nil
}
