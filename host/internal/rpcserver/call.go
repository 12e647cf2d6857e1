package rpcserver

import (
	"fmt"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Call is a decoded request envelope {"args": [...], "kwargs": {...}} with
// agent_id already taken out of kwargs.
type Call struct {
	Method string
	Args   []any
	Kwargs map[string]any
}

// Error is a handler error with the Python exception class name the
// manager sees in FAILURE metadata; the session service names its errors
// with the same type.
type Error = sessionapi.Error

// decodeEnvelope parses the application msgpack of a FUNCTION body.
func decodeEnvelope(method string, payload []byte) (*Call, error) {
	value, err := wiremsg.Unmarshal(payload)
	if err != nil {
		return nil, &Error{Name: "DecodeError", Err: fmt.Errorf("request body: %w", err)}
	}
	envelope, ok := value.(wiremsg.Map)
	if !ok {
		return nil, typeError("request body is %T, want a map with args and kwargs", value)
	}
	call := &Call{Method: method, Kwargs: map[string]any{}}
	switch args := envelope["args"].(type) {
	case []any:
		call.Args = args
	case nil:
	default:
		return nil, typeError("args is %T, want an array", args)
	}
	switch kwargs := envelope["kwargs"].(type) {
	case wiremsg.Map:
		for k, v := range kwargs {
			name, ok := k.(string)
			if !ok {
				return nil, typeError("kwargs key %v is %T, want str", k, k)
			}
			call.Kwargs[name] = v
		}
	case nil:
	default:
		return nil, typeError("kwargs is %T, want a map", kwargs)
	}
	return call, nil
}

// param describes one positional-or-keyword parameter of a method.
type param struct {
	name     string
	optional bool
}

// bind matches args and kwargs to params as Python would, and fails naming
// the argument on a wrong count or an unexpected keyword.
func (c *Call) bind(params ...param) ([]any, error) {
	if len(c.Args) > len(params) {
		return nil, typeError("%s() takes %d positional arguments but %d were given", c.Method, len(params), len(c.Args))
	}
	values := make([]any, len(params))
	given := make([]bool, len(params))
	for i, a := range c.Args {
		values[i], given[i] = a, true
	}
	for name, v := range c.Kwargs {
		idx := -1
		for i, p := range params {
			if p.name == name {
				idx = i
			}
		}
		if idx < 0 {
			return nil, typeError("%s() got an unexpected keyword argument '%s'", c.Method, name)
		}
		if given[idx] {
			return nil, typeError("%s() got multiple values for argument '%s'", c.Method, name)
		}
		values[idx], given[idx] = v, true
	}
	for i, p := range params {
		if !given[i] && !p.optional {
			return nil, typeError("%s() missing required argument: '%s'", c.Method, p.name)
		}
	}
	return values, nil
}
