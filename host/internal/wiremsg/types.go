// Package wiremsg is the one codec for Python's wire values: the application
// msgpack of ai/backend/common/msgpack.py (plain msgpack plus ext types for
// UUIDs, datetimes, paths and the Python objects that travel as protocol-5
// pickles) that the manager RPC, the events, the heartbeat and the
// statistics all carry. Decoding and encoding share one type model and one
// ext table; the pickles it writes are byte for byte CPython 3.13's, so
// that the manager's isinstance checks pass on values the agent made.
package wiremsg

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/shopspring/decimal"
)

// Ext type codes of ai/backend/common/msgpack.py (ExtTypes).
const (
	ExtUUID              int8 = 1
	ExtDatetime          int8 = 2
	ExtDecimal           int8 = 3
	ExtPosixPath         int8 = 4
	ExtPurePosixPath     int8 = 5
	ExtEnum              int8 = 6
	ExtImageRef          int8 = 7
	ExtResourceSlot      int8 = 8
	ExtSlotName          int8 = 9
	ExtBinarySize        int8 = 16
	ExtAutoDirectoryPath int8 = 17
)

// Map is a decoded msgpack map. Keys are string, Bin, int64, uint64, bool,
// float64, UUID or nil; Python sends UUID keys (kernel_image_refs), so keys
// cannot be restricted to strings. A decoded map is looked up, never
// re-sent in order, so it is a Go map; values the agent writes in a
// Python dict's order are a Dict.
type Map = map[any]any

// KV is one entry of a Dict.
type KV struct {
	Key   any
	Value any
}

// Dict is a Python dict with its insertion order, as the agent writes it:
// the order is visible in the msgpack bytes and in logs, and Go maps have
// none.
type Dict []KV

// Get returns the value stored under key.
func (d Dict) Get(key string) (any, bool) {
	for _, kv := range d {
		if k, ok := kv.Key.(string); ok && k == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tuple is a Python tuple: a msgpack array (packb's default hook turns
// tuples into lists).
type Tuple []any

// Ext is a raw ext value with its payload as is, for payloads the codec
// does not model (a hand-made pickle, say); Marshal writes it unchanged.
type Ext struct {
	Code int8
	Data []byte
}

// Bin is a msgpack bin used as a map key ([]byte is not comparable).
type Bin string

// UUID is a 16-byte UUID (ext 1).
type UUID [16]byte

// String formats the UUID the way Python's str(uuid) does.
func (u UUID) String() string {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}

// ParseUUID accepts the canonical dashed form and the 32-digit hex form.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	digits := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			digits = append(digits, s[i])
		}
	}
	if len(digits) != 32 {
		return u, fmt.Errorf("parse uuid %q: want 32 hex digits, got %d", s, len(digits))
	}
	if _, err := hex.Decode(u[:], digits); err != nil {
		return u, fmt.Errorf("parse uuid %q: %w", s, err)
	}
	return u, nil
}

// Enum is a Python enum member (ext 6). Value holds the member's value
// (CPython 3.12+ pickles by value, and so does Marshal); Name holds the
// member name when it is known: sent by name (CPython 3.11), or one of
// knownEnumValues. Marshal ignores Name.
type Enum struct {
	Module string
	Class  string
	Value  any
	Name   string
}

// String is the enum's value when it is a string, else its name.
func (e Enum) String() string {
	if s, ok := e.Value.(string); ok {
		return s
	}
	if e.Name != "" {
		return e.Name
	}
	return fmt.Sprint(e.Value)
}

// SlotTypes returns the ai.backend.common.types.SlotTypes member with value
// unit ("count", "bytes", "unique" or "unified").
func SlotTypes(unit string) Enum {
	return Enum{Module: typesModule, Class: "SlotTypes", Value: unit}
}

// KernelLifecycleEventReason returns the member of
// ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason
// with value reason (e.g. "user-requested").
func KernelLifecycleEventReason(reason string) Enum {
	return Enum{
		Module: "ai.backend.common.events.event_types.kernel.types",
		Class:  "KernelLifecycleEventReason",
		Value:  reason,
	}
}

// Module paths of the upstream classes.
const (
	typesModule  = "ai.backend.common.types"
	dockerModule = "ai.backend.common.docker"
)

// ImageRef is ai.backend.common.docker.ImageRef (ext 7).
type ImageRef struct {
	Name         string
	Project      string
	Tag          string
	Registry     string
	Architecture string
	IsLocal      bool
}

// Canonical is registry/project/name:tag, as ImageRef.canonical builds it.
func (r ImageRef) Canonical() string {
	prefix := r.Registry + "/"
	if r.Project != "" {
		prefix += r.Project + "/"
	}
	return prefix + r.Name + ":" + r.Tag
}

// Short is project/name:tag without the registry, as ImageRef.short: the
// name a local image (IsLocal) has on the node.
func (r ImageRef) Short() string {
	name := r.Name
	if r.Project != "" {
		name = r.Project + "/" + name
	}
	return name + ":" + r.Tag
}

// Local is the name the node knows the image by: Short for a local image,
// else Canonical (agent/docker/agent.py, the container's Image).
func (r ImageRef) Local() string {
	if r.IsLocal {
		return r.Short()
	}
	return r.Canonical()
}

// Slot is one entry of a ResourceSlot.
type Slot struct {
	Name   string
	Amount decimal.Decimal
}

// ResourceSlot is ai.backend.common.types.ResourceSlot (ext 8): slot names
// and exact amounts. It is a dict, so the order of the entries is the
// order the manager iterates in and the order the pickle holds; a name
// appears once.
type ResourceSlot []Slot

// Get returns the amount of the named slot.
func (r ResourceSlot) Get(name string) (decimal.Decimal, bool) {
	for _, s := range r {
		if s.Name == name {
			return s.Amount, true
		}
	}
	return decimal.Decimal{}, false
}

// SlotName is ai.backend.common.types.SlotName (ext 9), e.g. "cuda.device".
type SlotName string

// BinarySize is ai.backend.common.types.BinarySize (ext 16), a byte count.
type BinarySize int64

// PosixPath is pathlib.PosixPath (ext 4).
type PosixPath string

// PurePosixPath is pathlib.PurePosixPath (ext 5).
type PurePosixPath string

// AutoDirectoryPath is ai.backend.common.types.AutoDirectoryPath (ext 17).
type AutoDirectoryPath string

// PyTypeName names a decoded value's type as Python's type(v).__name__
// does, for error messages that read like the manager's own.
func PyTypeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "NoneType"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case bool:
		return "bool"
	case int64, uint64:
		return "int"
	case float64:
		return "float"
	case []any, Tuple:
		return "tuple"
	case Map, Dict:
		return "dict"
	case UUID:
		return "UUID"
	case Enum:
		return x.Class
	case ImageRef:
		return "ImageRef"
	case ResourceSlot:
		return "ResourceSlot"
	case SlotName:
		return "SlotName"
	case BinarySize:
		return "BinarySize"
	case decimal.Decimal:
		return "Decimal"
	case PosixPath, PurePosixPath:
		return "PurePosixPath"
	case AutoDirectoryPath:
		return "AutoDirectoryPath"
	}
	return strconv.Quote(fmt.Sprintf("%T", v))
}
