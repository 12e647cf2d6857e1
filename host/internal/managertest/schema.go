package managertest

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// lifecycleReasons are the values of 26.8.1's KernelLifecycleEventReason
// (lifecycle.Reasons, pinned there to common/events/event_types/kernel/types.py).
// Unpickling any other value raises ValueError in the manager, and the
// event is dropped after retries.
func lifecycleReasons() []string {
	var out []string
	for _, r := range lifecycle.Reasons() {
		out = append(out, string(r))
	}
	return out
}

// enumClass is one Python enum the manager can unpickle: its module, name
// and member values.
type enumClass struct {
	module, class string
	values        []string
}

var (
	lifecycleReason = enumClass{"ai.backend.common.events.event_types.kernel.types", "KernelLifecycleEventReason", lifecycleReasons()}
	// common/types.py SlotTypes.
	slotTypes = enumClass{"ai.backend.common.types", "SlotTypes", []string{"count", "bytes", "unique", "unified"}}
	// logging/types.py LogLevel; AgentErrorEvent.deserialize calls
	// LogLevel(value[4]), which is case-insensitive (CIStrEnum).
	logLevels = []string{"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE", "NOTSET"}
)

// check validates one decoded value; path names it in the error.
type check func(path string, v any) error

func typeName(v any) string { return wiremsg.PyTypeName(v) }

func wrongType(path string, v any, want string) error {
	return fmt.Errorf("%s: %s, want %s", path, typeName(v), want)
}

func isStr(path string, v any) error {
	if _, ok := v.(string); !ok {
		return wrongType(path, v, "str")
	}
	return nil
}

// isInt refuses bool: msgpack keeps them apart, and an exit code that
// arrives as True is a bug even though Python would take it.
func isInt(path string, v any) error {
	switch v.(type) {
	case int64, uint64:
		return nil
	}
	return wrongType(path, v, "int")
}

// isNumber is a float field: Python's dataclass takes an int too.
func isNumber(path string, v any) error {
	switch v.(type) {
	case int64, uint64, float64:
		return nil
	}
	return wrongType(path, v, "float")
}

func isDict(path string, v any) error {
	if _, ok := v.(wiremsg.Map); !ok {
		return wrongType(path, v, "dict")
	}
	return nil
}

func isBool(path string, v any) error {
	if _, ok := v.(bool); !ok {
		return wrongType(path, v, "bool")
	}
	return nil
}

func isBytes(path string, v any) error {
	if _, ok := v.([]byte); !ok {
		return wrongType(path, v, "bytes")
	}
	return nil
}

func optional(c check) check {
	return func(path string, v any) error {
		if v == nil {
			return nil
		}
		return c(path, v)
	}
}

// canonicalUUID is the form str(uuid.UUID) writes; the agent has no reason
// to send another, although uuid.UUID() would accept braces or no dashes.
var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func isUUIDStr(path string, v any) error {
	s, ok := v.(string)
	if !ok {
		return wrongType(path, v, "str (a UUID)")
	}
	if !canonicalUUID.MatchString(s) {
		return fmt.Errorf("%s: %q is not a UUID as str(uuid.UUID) writes it", path, s)
	}
	return nil
}

// isEnum accepts only a pickled member of class, as pickle.loads does.
func isEnum(class enumClass) check {
	return func(path string, v any) error {
		e, ok := v.(wiremsg.Enum)
		if !ok {
			return wrongType(path, v, class.class+" (pickled enum, ext 6)")
		}
		if e.Module != class.module || e.Class != class.class {
			return fmt.Errorf("%s: pickled %s.%s, want %s.%s", path, e.Module, e.Class, class.module, class.class)
		}
		s, ok := e.Value.(string)
		if !ok || !slices.Contains(class.values, s) {
			return fmt.Errorf("%s: %v is not a valid %s (pickle.loads raises ValueError)", path, e, class.class)
		}
		return nil
	}
}

// isReason is kernel_terminated's reason: the enum when the agent chose it,
// or the plain str the manager passed to destroy_kernel, echoed back.
func isReason(path string, v any) error {
	if _, ok := v.(string); ok {
		return nil
	}
	return isEnum(lifecycleReason)(path, v)
}

func isLogLevel(path string, v any) error {
	s, ok := v.(string)
	if !ok {
		return wrongType(path, v, "str (LogLevel)")
	}
	if !slices.Contains(logLevels, strings.ToUpper(s)) {
		return fmt.Errorf("%s: %q is not a LogLevel", path, s)
	}
	return nil
}

// isImageRef is an ImageRef pickle (ext 7).
func isImageRef(path string, v any) error {
	if _, ok := v.(wiremsg.ImageRef); !ok {
		return wrongType(path, v, "ImageRef (ext 7)")
	}
	return nil
}

// field is one key of a dict validated by hasFields.
type field struct {
	name  string
	check check
	// optional fields may be missing (they have a default upstream).
	optional bool
}

// hasFields checks a dict's listed keys; other keys are allowed (pydantic
// ignores extra fields by default).
func hasFields(fields ...field) check {
	return func(path string, v any) error {
		m, ok := v.(wiremsg.Map)
		if !ok {
			return wrongType(path, v, "dict")
		}
		for _, f := range fields {
			val, present := m[f.name]
			if !present {
				if f.optional {
					continue
				}
				return fmt.Errorf("%s: field %q missing", path, f.name)
			}
			if err := f.check(path+"."+f.name, val); err != nil {
				return err
			}
		}
		return nil
	}
}

// dictOf checks every key and value of a dict.
func dictOf(key, value check) check {
	return func(path string, v any) error {
		m, ok := v.(wiremsg.Map)
		if !ok {
			return wrongType(path, v, "dict")
		}
		for k, val := range m {
			if err := key(path+" key", k); err != nil {
				return err
			}
			if err := value(fmt.Sprintf("%s[%v]", path, k), val); err != nil {
				return err
			}
		}
		return nil
	}
}

func isResourceSlot(path string, v any) error {
	if _, ok := v.(wiremsg.ResourceSlot); !ok {
		return wrongType(path, v, "ResourceSlot (ext 8)")
	}
	return nil
}

func isSlotKey(path string, v any) error {
	switch v.(type) {
	case string, wiremsg.SlotName:
		return nil
	}
	return wrongType(path, v, "str or SlotName")
}

func nonEmptyStr(path string, v any) error {
	s, ok := v.(string)
	if !ok {
		return wrongType(path, v, "str")
	}
	if s == "" {
		return fmt.Errorf("%s: empty", path)
	}
	return nil
}

// agentInfo is AgentInfo.model_validate (common/data/agent/types.py) plus
// what the manager's handle_heartbeat then needs: region goes into the NOT
// NULL agents.region column (models/agent/row.py), and public_host is what
// users' SSH/SFTP direct access dials.
var agentInfo = hasFields(
	field{name: "ip", check: isStr},
	field{name: "region", check: nonEmptyStr},
	field{name: "scaling_group", check: optional(isStr)},
	field{name: "addr", check: isStr},
	field{name: "public_key", check: optional(func(p string, v any) error {
		if isBytes(p, v) == nil || isStr(p, v) == nil {
			return nil
		}
		return wrongType(p, v, "bytes")
	})},
	field{name: "public_host", check: nonEmptyStr},
	field{name: "available_resource_slots", check: isResourceSlot},
	field{name: "slot_key_and_units", check: dictOf(isSlotKey, isEnum(slotTypes))},
	field{name: "version", check: isStr},
	field{name: "compute_plugins", check: dictOf(isStr, isDict)},
	field{name: "images", check: isBytes},
	field{name: "architecture", check: isStr},
	field{name: "auto_terminate_abusing_kernel", check: isBool},
	field{name: "images_opts", check: hasFields(field{name: "compression", check: isStr}), optional: true},
)

// scannedImage is ScannedImage.from_dict (common/data/image/types.py).
var scannedImage = hasFields(field{name: "canonical", check: isStr}, field{name: "digest", check: isStr})

// arity says how many positional args an event's deserialize reads; min <
// max where upstream checks len(value) (the image pull events).
type schema struct {
	min  int
	args []check
	// broadcast: the event is also (or only) published on events_all.
	broadcast bool
	// anycast: the event goes to the stream.
	anycast bool
}

// schemas are the deserialize methods of the events an agent sends, as of
// 26.8.1 (common/events/event_types/{agent,kernel,session,image,bgtask}).
var schemas = map[string]schema{
	// agent/anycast.py BaseAgentLifecycleEvent.
	"agent_started":    {args: []check{isStr}, anycast: true},
	"agent_terminated": {args: []check{isStr}, anycast: true},
	// agent/anycast.py AgentErrorEvent.
	"agent_error": {args: []check{isStr, optional(isStr), func(string, any) error { return nil }, isDict, isLogLevel}, anycast: true},
	// agent/anycast.py AgentHeartbeatEvent.
	"agent_heartbeat": {args: []check{agentInfo}, anycast: true},
	// agent/anycast.py AgentInstalledImagesRemoveEvent.
	"agent_installed_images_remove": {args: []check{dictOf(isStr, scannedImage)}, anycast: true},
	// kernel/anycast.py KernelCreationEvent.
	"kernel_preparing": {args: []check{isUUIDStr, isUUIDStr, isStr, isDict}, anycast: true, broadcast: true},
	"kernel_pulling":   {args: []check{isUUIDStr, isUUIDStr, isStr, isDict}, anycast: true, broadcast: true},
	"kernel_creating":  {args: []check{isUUIDStr, isUUIDStr, isStr, isDict}, anycast: true, broadcast: true},
	"kernel_started":   {args: []check{isUUIDStr, isUUIDStr, isStr, isDict}, anycast: true, broadcast: true},
	// kernel/anycast.py KernelTerminationEvent.
	"kernel_terminated": {args: []check{isUUIDStr, isUUIDStr, isReason, isInt}, anycast: true, broadcast: true},
	// kernel/anycast.py DoSyncKernelLogsEvent.
	"do_sync_kernel_logs": {args: []check{isUUIDStr, isStr}, anycast: true},
	// session/anycast.py SessionResultEvent.
	"session_success": {args: []check{isUUIDStr, isEnum(lifecycleReason), isInt}, anycast: true, broadcast: true},
	"session_failure": {args: []check{isUUIDStr, isEnum(lifecycleReason), isInt}, anycast: true, broadcast: true},
	// session/anycast.py BaseSessionExecutionEvent.
	"execution_started":  {args: []check{isUUIDStr}, anycast: true},
	"execution_finished": {args: []check{isUUIDStr}, anycast: true},
	"execution_timeout":  {args: []check{isUUIDStr}, anycast: true},
	// image/anycast.py.
	"image_pull_started":  {min: 3, args: []check{isStr, isStr, isNumber, optional(isImageRef)}, anycast: true},
	"image_pull_finished": {min: 4, args: []check{isStr, isStr, isNumber, optional(isStr), optional(isImageRef)}, anycast: true},
	"image_pull_failed":   {min: 3, args: []check{isStr, isStr, isStr, optional(isImageRef)}, anycast: true},
	// bgtask/broadcast.py: the progress is declared float, and the agent
	// sends ints as upstream's reporter does.
	"bgtask_updated":   {args: []check{isUUIDStr, isNumber, isNumber, optional(isStr)}, broadcast: true},
	"bgtask_done":      {args: []check{isUUIDStr, optional(isStr)}, broadcast: true},
	"bgtask_failed":    {args: []check{isUUIDStr, optional(isStr)}, broadcast: true},
	"bgtask_cancelled": {args: []check{isUUIDStr, optional(isStr)}, broadcast: true},
}

// checkArgs validates an event's decoded args tuple against its schema.
func checkArgs(name string, args []any) error {
	s, ok := schemas[name]
	if !ok {
		return fmt.Errorf("%s: not an event the 26.8 manager handles from an agent", name)
	}
	lo := s.min
	if lo == 0 {
		lo = len(s.args)
	}
	if len(args) < lo || len(args) > len(s.args) {
		if lo == len(s.args) {
			return fmt.Errorf("%s: %d args, want %d", name, len(args), lo)
		}
		return fmt.Errorf("%s: %d args, want %d to %d", name, len(args), lo, len(s.args))
	}
	for i, a := range args {
		if err := s.args[i](fmt.Sprintf("%s args[%d]", name, i), a); err != nil {
			return err
		}
	}
	return nil
}
