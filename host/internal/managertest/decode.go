// Package managertest reads what the agent writes to Redis the way a
// Backend.AI 26.8 manager does, strictly, so that tests fail where the
// manager would: an event whose args do not unpickle (an enum value the
// manager's class lacks), a missing field, a wrong type, a stream entry or
// broadcast message in another shape than the dispatcher's.
//
// The decoding follows 26.8.1's common/message_queue/types.py
// (MessagePayload.from_anycast / from_broadcast), common/msgpack.py
// (unpackb with pickled ext types) and each event class's deserialize
// (common/events/event_types/*).
package managertest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Event is one event as the manager decoded it.
type Event struct {
	// Name is the event name, e.g. "kernel_terminated".
	Name string
	// Source is the sending agent's id.
	Source string
	// Args is the positional tuple, with pickled values decoded
	// (wiremsg.Enum, wiremsg.ImageRef, ...).
	Args []any
	// Broadcast is true for a message read from events_all.
	Broadcast bool
}

// Str returns Args[i] when it is a str, else "".
func (e Event) Str(i int) string {
	if i < len(e.Args) {
		s, _ := e.Args[i].(string)
		return s
	}
	return ""
}

// Reason returns Args[i] as the manager sees a reason: an enum's value, or
// a str.
func (e Event) Reason(i int) string {
	if i >= len(e.Args) {
		return ""
	}
	switch v := e.Args[i].(type) {
	case wiremsg.Enum:
		return v.String()
	case string:
		return v
	}
	return ""
}

// ReasonIsEnum tells whether Args[i] travelled as a pickled enum.
func (e Event) ReasonIsEnum(i int) bool {
	if i >= len(e.Args) {
		return false
	}
	_, ok := e.Args[i].(wiremsg.Enum)
	return ok
}

// Int returns Args[i] as an int, or -1<<31 when it is not one.
func (e Event) Int(i int) int {
	if i < len(e.Args) {
		switch v := e.Args[i].(type) {
		case int64:
			return int(v)
		case uint64:
			return int(v)
		}
	}
	return -1 << 31
}

// metadataKeys are MessageMetadata's fields; the agent has no request or
// user context, so each is null.
var metadataKeys = []string{"request_id", "user", "triggered_user"}

func checkMetadata(raw string) error {
	var md map[string]any
	if err := json.Unmarshal([]byte(raw), &md); err != nil {
		return fmt.Errorf("metadata is not JSON: %w", err)
	}
	for _, k := range metadataKeys {
		if _, ok := md[k]; !ok {
			return fmt.Errorf("metadata lacks %q: %s", k, raw)
		}
	}
	return nil
}

// DecodeArgs unpacks an event's msgpack args as common/msgpack.py's unpackb
// does and validates them against the event's deserialize.
func DecodeArgs(name string, packed []byte) ([]any, error) {
	v, err := wiremsg.Unmarshal(packed)
	if err != nil {
		return nil, fmt.Errorf("%s: args do not unpack: %w", name, err)
	}
	args, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: args are a %s, want a tuple", name, typeName(v))
	}
	if err := checkArgs(name, args); err != nil {
		return nil, err
	}
	return args, nil
}

// DecodeStreamEntry decodes one entry of the "events" stream from its
// field/value pairs in the order Redis returns them (XRANGE keeps the
// XADD order): name, source, args, metadata.
func DecodeStreamEntry(pairs []string) (Event, error) {
	want := []string{"name", "source", "args", "metadata"}
	if len(pairs) != 2*len(want) {
		return Event{}, fmt.Errorf("stream entry has %d fields, want %v: %q", len(pairs)/2, want, pairs)
	}
	for i, f := range want {
		if pairs[2*i] != f {
			return Event{}, fmt.Errorf("stream entry field %d is %q, want %q", i, pairs[2*i], f)
		}
	}
	ev := Event{Name: pairs[1], Source: pairs[3]}
	s, ok := schemas[ev.Name]
	if !ok {
		return Event{}, fmt.Errorf("%s: not an event the 26.8 manager handles from an agent", ev.Name)
	}
	if !s.anycast {
		return Event{}, fmt.Errorf("%s: is a broadcast-only event, found in the stream", ev.Name)
	}
	if err := checkMetadata(pairs[7]); err != nil {
		return Event{}, fmt.Errorf("%s: %w", ev.Name, err)
	}
	args, err := DecodeArgs(ev.Name, []byte(pairs[5]))
	if err != nil {
		return Event{}, err
	}
	ev.Args = args
	return ev, nil
}

// DecodeBroadcast decodes one events_all message: a JSON object with name,
// source, args (base64 msgpack) and metadata (a JSON string).
func DecodeBroadcast(payload string) (Event, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return Event{}, fmt.Errorf("broadcast is not a JSON object: %w", err)
	}
	str := func(k string) (string, error) {
		s, ok := m[k].(string)
		if !ok {
			return "", fmt.Errorf("broadcast field %q is %T, want a string: %s", k, m[k], payload)
		}
		return s, nil
	}
	name, err := str("name")
	if err != nil {
		return Event{}, err
	}
	source, err := str("source")
	if err != nil {
		return Event{}, err
	}
	b64, err := str("args")
	if err != nil {
		return Event{}, err
	}
	md, err := str("metadata")
	if err != nil {
		return Event{}, err
	}
	if len(m) != 4 {
		return Event{}, fmt.Errorf("broadcast has %d fields, want name, source, args, metadata: %s", len(m), payload)
	}
	s, ok := schemas[name]
	if !ok {
		return Event{}, fmt.Errorf("%s: not an event the 26.8 manager handles from an agent", name)
	}
	if !s.broadcast {
		return Event{}, fmt.Errorf("%s: is not a broadcast event, found on events_all", name)
	}
	if err := checkMetadata(md); err != nil {
		return Event{}, fmt.Errorf("%s: %w", name, err)
	}
	packed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Event{}, fmt.Errorf("%s: broadcast args are not base64: %w", name, err)
	}
	args, err := DecodeArgs(name, packed)
	if err != nil {
		return Event{}, err
	}
	return Event{Name: name, Source: source, Args: args, Broadcast: true}, nil
}

// IsBroadcast tells whether the manager expects name on events_all.
func IsBroadcast(name string) bool { return schemas[name].broadcast }

// IsAnycast tells whether the manager expects name in the events stream.
func IsAnycast(name string) bool { return schemas[name].anycast }
