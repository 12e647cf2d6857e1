package events

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Encoding selects how an event's arguments travel.
type Encoding int

const (
	// EncodingArgs is the 26.8.x release's: stream field "args" holding
	// msgpack(tuple), broadcast field "args" holding base64 of the same.
	EncodingArgs Encoding = iota
	// EncodingJSONPayload is upstream main's: field "payload" holding the
	// event's named fields as JSON.
	EncodingJSONPayload
)

// ParseEncoding accepts "msgpack" (or "" / "26.8") and "json".
func ParseEncoding(s string) (Encoding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "msgpack", "args", "26.8":
		return EncodingArgs, nil
	case "json", "payload":
		return EncodingJSONPayload, nil
	}
	return 0, fmt.Errorf("unknown event encoding %q (want msgpack or json)", s)
}

func (e Encoding) String() string {
	if e == EncodingJSONPayload {
		return "json"
	}
	return "msgpack"
}

// Redis names of upstream's message queue (agent.py RedisMQArgs).
const (
	StreamKey        = "events"
	BroadcastChannel = "events_all"
	// StreamMaxLen is valkey_stream's _MAX_STREAM_LENGTH, trimmed with "~".
	StreamMaxLen = 128
)

// emptyMetadata is MessageMetadata() as orjson writes it: the agent has no
// request or user context for the events it originates.
const emptyMetadata = `{"request_id":null,"user":null,"triggered_user":null}`

// message is an event encoded for Redis: the XADD field/value pairs in
// order, and the events_all message for broadcast events.
type message struct {
	name    string
	fields  []string // field, value, field, value, ...
	publish []byte   // nil: not broadcast
	// broadcastOnly: publish only, no XADD (fields still name the event,
	// for the queue and the logs).
	broadcastOnly bool
	// cacheID: the publish message is also SET under this key for
	// CacheTTL ("": not cached).
	cacheID string
}

// encodeMessage renders ev for the wire in the given encoding.
func encodeMessage(ev Event, source string, enc Encoding) (message, error) {
	name := ev.Name()
	var argField, argValue, broadcastValue string
	switch enc {
	case EncodingArgs:
		packed, err := wiremsg.Marshal(ev.Args())
		if err != nil {
			return message{}, fmt.Errorf("encode %s args: %w", name, err)
		}
		argField, argValue = "args", string(packed)
		broadcastValue = base64.StdEncoding.EncodeToString(packed)
	case EncodingJSONPayload:
		body, err := json.Marshal(ev.Body())
		if err != nil {
			return message{}, fmt.Errorf("encode %s payload: %w", name, err)
		}
		argField, argValue, broadcastValue = "payload", string(body), string(body)
	default:
		return message{}, fmt.Errorf("encode %s: unknown encoding %d", name, enc)
	}
	m := message{
		name:   name,
		fields: []string{"name", name, "source", source, argField, argValue, "metadata", emptyMetadata},
	}
	if ev.Broadcast() {
		// Key order as upstream's serialize_broadcast dict; encoding/json
		// would sort a Go map, so build it from an ordered map.
		pub, err := json.Marshal(wiremsg.Dict{
			{Key: "name", Value: name}, {Key: "source", Value: source},
			{Key: argField, Value: broadcastValue}, {Key: "metadata", Value: emptyMetadata},
		})
		if err != nil {
			return message{}, fmt.Errorf("encode %s broadcast: %w", name, err)
		}
		m.publish = pub
		_, m.broadcastOnly = ev.(BroadcastOnly)
		if c, ok := ev.(Cached); ok {
			m.cacheID = c.CacheID()
		}
	}
	return m, nil
}

// Spooled message layout: version byte, uvarint field count, each field as
// uvarint length + bytes, then uvarint length + broadcast message (0: none).
// The version byte also says where the message goes: spoolAnycast records
// are added to the stream (and published when they carry a broadcast
// message), spoolBroadcastOnly ones are only published. spoolCached
// records (written since the bgtask cache) have a flags byte after the
// version (spoolFlagBroadcastOnly) and the cache id, as uvarint length +
// bytes, after the broadcast message; a message without a cache id is
// still written as version 1 or 2, so that an older build reads it.
const (
	spoolAnycast       = 1
	spoolBroadcastOnly = 2
	spoolCached        = 3

	spoolFlagBroadcastOnly = 1
)

// maxSpoolFields bounds the field count read back from disk.
const maxSpoolFields = 64

func (m message) marshalSpool() []byte {
	var out []byte
	switch {
	case m.cacheID != "":
		var flags byte
		if m.broadcastOnly {
			flags |= spoolFlagBroadcastOnly
		}
		out = []byte{spoolCached, flags}
	case m.broadcastOnly:
		out = []byte{spoolBroadcastOnly}
	default:
		out = []byte{spoolAnycast}
	}
	out = binary.AppendUvarint(out, uint64(len(m.fields)))
	for _, f := range m.fields {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	out = binary.AppendUvarint(out, uint64(len(m.publish)))
	out = append(out, m.publish...)
	if m.cacheID != "" {
		out = binary.AppendUvarint(out, uint64(len(m.cacheID)))
		out = append(out, m.cacheID...)
	}
	return out
}

var errSpoolRecord = errors.New("malformed spooled event")

// unmarshalSpool decodes a record written by marshalSpool, of any version.
func unmarshalSpool(data []byte) (message, error) {
	if len(data) == 0 {
		return message{}, fmt.Errorf("%w: empty", errSpoolRecord)
	}
	var broadcastOnly, cached bool
	rest := data[1:]
	switch data[0] {
	case spoolAnycast:
	case spoolBroadcastOnly:
		broadcastOnly = true
	case spoolCached:
		if len(rest) == 0 || rest[0]&^spoolFlagBroadcastOnly != 0 {
			return message{}, fmt.Errorf("%w: bad flags", errSpoolRecord)
		}
		broadcastOnly, cached = rest[0]&spoolFlagBroadcastOnly != 0, true
		rest = rest[1:]
	default:
		return message{}, fmt.Errorf("%w: unknown version %d", errSpoolRecord, data[0])
	}
	readBytes := func() ([]byte, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, fmt.Errorf("%w: bad length", errSpoolRecord)
		}
		b := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return b, nil
	}
	count, k := binary.Uvarint(rest)
	if k <= 0 || count == 0 || count > maxSpoolFields || count%2 != 0 {
		return message{}, fmt.Errorf("%w: field count", errSpoolRecord)
	}
	rest = rest[k:]
	m := message{fields: make([]string, 0, count)}
	for range count {
		f, err := readBytes()
		if err != nil {
			return message{}, err
		}
		m.fields = append(m.fields, string(f))
	}
	if m.fields[0] != "name" {
		return message{}, fmt.Errorf("%w: first field is not the name", errSpoolRecord)
	}
	m.name = m.fields[1]
	pub, err := readBytes()
	if err != nil {
		return message{}, err
	}
	if len(pub) > 0 {
		m.publish = append([]byte(nil), pub...)
	}
	if cached {
		id, err := readBytes()
		if err != nil {
			return message{}, err
		}
		if len(id) == 0 || m.publish == nil {
			return message{}, fmt.Errorf("%w: a cached record without a cache id or broadcast message", errSpoolRecord)
		}
		m.cacheID = string(id)
	}
	if len(rest) != 0 {
		return message{}, fmt.Errorf("%w: %d trailing bytes", errSpoolRecord, len(rest))
	}
	if broadcastOnly && m.publish == nil {
		return message{}, fmt.Errorf("%w: broadcast-only without a broadcast message", errSpoolRecord)
	}
	m.broadcastOnly = broadcastOnly
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
