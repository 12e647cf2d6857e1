// Package pywire writes the Python-flavoured values a Backend.AI 26.8.x
// manager unpacks from an agent's events: protocol-5 pickles of Decimal,
// ResourceSlot, SlotName, ImageRef and enum members, byte for byte as
// CPython 3.13 writes them, and the application msgpack
// (ai/backend/common/msgpack.py) that carries them as ext types.
//
// Decoding lives in wiremsg; this package only encodes, so that the manager's
// isinstance checks (AgentInfo.available_resource_slots is a ResourceSlot)
// pass on values the agent made.
package pywire

import (
	"encoding/binary"

	"github.com/shopspring/decimal"
)

// Pickle opcodes CPython's C pickler emits for the shapes below.
const (
	opProto           = 0x80
	opFrame           = 0x95
	opShortUnicode    = 0x8c
	opUnicode         = 'X'
	opUnicode8        = 0x8d
	opMemoize         = 0x94
	opBinGet          = 'h'
	opLongBinGet      = 'j'
	opStackGlobal     = 0x93
	opEmptyTuple      = ')'
	opTuple1          = 0x85
	opTuple2          = 0x86
	opReduce          = 'R'
	opNewObj          = 0x81
	opNone            = 'N'
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opEmptyDict       = '}'
	opMark            = '('
	opSetItem         = 's'
	opSetItems        = 'u'
	opBuild           = 'b'
	opStop            = '.'
	frameSizeTarget   = 64 * 1024 // pickle._FRAME_SIZE_TARGET
	frameSizeMin      = 4         // pickle._FRAME_SIZE_MIN
	setItemsBatchSize = 1000      // pickle._BATCHSIZE
)

// Slot is one entry of a ResourceSlot. ResourceSlot is a dict, so the order
// of a []Slot is the order the manager iterates in.
type Slot struct {
	Name   string
	Amount decimal.Decimal
}

// ResourceSlot is ai.backend.common.types.ResourceSlot (msgpack ext 8).
type ResourceSlot []Slot

// SlotName is ai.backend.common.types.SlotName (msgpack ext 9).
type SlotName string

// Enum is a Python enum member, pickled by value as CPython 3.12+ does
// (msgpack ext 6).
type Enum struct {
	Module string
	Class  string
	Value  string
}

// ImageRef is ai.backend.common.docker.ImageRef (msgpack ext 7).
type ImageRef struct {
	Name         string
	Project      string
	Tag          string
	Registry     string
	Architecture string
	IsLocal      bool
}

// Module paths of the upstream classes.
const (
	typesModule  = "ai.backend.common.types"
	dockerModule = "ai.backend.common.docker"
)

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

// pickler writes one protocol-5 pickle. The memo mirrors CPython's, which is
// keyed by object identity: every written string and container gets a fresh
// memo slot, and only values that are one object in Python (a class used
// twice, the interned empty string) are fetched back with BINGET.
type pickler struct {
	frame     []byte // the frame being filled
	out       []byte // committed frames
	nextMemo  uint32
	globalIDs map[[2]string]uint32
	emptyStr  int64 // memo id of "" plus one; 0 when not yet written
}

func newPickler() *pickler {
	return &pickler{globalIDs: map[[2]string]uint32{}}
}

// finish writes STOP and returns the whole pickle.
func (p *pickler) finish() []byte {
	p.frame = append(p.frame, opStop)
	p.commitFrame()
	return append([]byte{opProto, 5}, p.out...)
}

// commitFrame moves the current frame to the output behind a FRAME header,
// as _Pickler_CommitFrame does (frames under 4 bytes go unframed).
func (p *pickler) commitFrame() {
	if len(p.frame) == 0 {
		return
	}
	if len(p.frame) >= frameSizeMin {
		var header [9]byte
		header[0] = opFrame
		binary.LittleEndian.PutUint64(header[1:], uint64(len(p.frame)))
		p.out = append(p.out, header[:]...)
	}
	p.out = append(p.out, p.frame...)
	p.frame = p.frame[:0]
}

// opcodeBoundary starts a new frame once the current one reaches the target
// size, as the C pickler does between opcodes.
func (p *pickler) opcodeBoundary() {
	if len(p.frame) >= frameSizeTarget {
		p.commitFrame()
	}
}

func (p *pickler) op(b ...byte) { p.frame = append(p.frame, b...) }

func (p *pickler) memoize() uint32 {
	p.op(opMemoize)
	id := p.nextMemo
	p.nextMemo++
	return id
}

func (p *pickler) get(id uint32) {
	if id < 256 {
		p.op(opBinGet, byte(id))
		return
	}
	var b [5]byte
	b[0] = opLongBinGet
	binary.LittleEndian.PutUint32(b[1:], id)
	p.op(b[:]...)
}

// freshString writes a string object that appears nowhere else in the pickle.
func (p *pickler) freshString(s string) uint32 {
	switch n := len(s); {
	case n < 256:
		p.op(opShortUnicode, byte(n))
	case n <= 0xffffffff:
		var b [5]byte
		b[0] = opUnicode
		binary.LittleEndian.PutUint32(b[1:], uint32(n))
		p.op(b[:]...)
	default:
		var b [9]byte
		b[0] = opUnicode8
		binary.LittleEndian.PutUint64(b[1:], uint64(n))
		p.op(b[:]...)
	}
	p.frame = append(p.frame, s...)
	id := p.memoize()
	p.opcodeBoundary()
	return id
}

// str writes a string; "" is CPython's singleton, so it is memoized once.
func (p *pickler) str(s string) {
	if s == "" {
		if p.emptyStr != 0 {
			p.get(uint32(p.emptyStr - 1))
			return
		}
		p.emptyStr = int64(p.freshString("")) + 1
		return
	}
	p.freshString(s)
}

// global writes module.name with STACK_GLOBAL, or fetches it from the memo.
func (p *pickler) global(module, name string) {
	key := [2]string{module, name}
	if id, ok := p.globalIDs[key]; ok {
		p.get(id)
		return
	}
	p.str(module)
	p.str(name)
	p.op(opStackGlobal)
	p.globalIDs[key] = p.memoize()
}

// bool writes NEWTRUE or NEWFALSE.
func (p *pickler) bool(v bool) {
	if v {
		p.op(opNewTrue)
	} else {
		p.op(opNewFalse)
	}
}

// dictItems writes the items of a dict already on the stack, batched like
// Pickler._batch_setitems: one item with SETITEM, more with MARK...SETITEMS.
func (p *pickler) dictItems(n int, writeItem func(i int)) {
	for start := 0; start < n; start += setItemsBatchSize {
		end := min(start+setItemsBatchSize, n)
		if end-start == 1 {
			writeItem(start)
			p.op(opSetItem)
			continue
		}
		p.op(opMark)
		for i := start; i < end; i++ {
			writeItem(i)
		}
		p.op(opSetItems)
	}
}

// decimal writes Decimal(str) through its __reduce__: (Decimal, (str,)).
func (p *pickler) decimal(d decimal.Decimal) {
	p.global("decimal", "Decimal")
	p.str(DecimalString(d))
	p.op(opTuple1)
	p.memoize()
	p.op(opReduce)
	p.memoize()
}

// DecimalString formats d the way the agent builds slot amounts,
// Decimal(str(value)): plain digits, no exponent.
func DecimalString(d decimal.Decimal) string { return d.String() }

// PickleDecimal returns pickle.dumps(Decimal(d), protocol=5).
func PickleDecimal(d decimal.Decimal) []byte {
	p := newPickler()
	p.decimal(d)
	return p.finish()
}

// PickleEnum returns pickle.dumps(member, protocol=5) for a string-valued
// enum member: Class(value) through REDUCE.
func PickleEnum(e Enum) []byte {
	p := newPickler()
	p.global(e.Module, e.Class)
	p.str(e.Value)
	p.op(opTuple1)
	p.memoize()
	p.op(opReduce)
	p.memoize()
	return p.finish()
}

// PickleResourceSlot returns pickle.dumps(ResourceSlot(...), protocol=5):
// NEWOBJ(ResourceSlot, ()) then BUILD((None, {"data": {name: Decimal}})),
// the state a UserDict with __slots__=("data",) reduces to.
func PickleResourceSlot(slots ResourceSlot) []byte {
	p := newPickler()
	p.global(typesModule, "ResourceSlot")
	p.op(opEmptyTuple, opNewObj)
	p.memoize()
	p.op(opNone, opEmptyDict)
	p.memoize()
	p.dictItems(1, func(int) {
		p.str("data")
		p.op(opEmptyDict)
		p.memoize()
		p.dictItems(len(slots), func(i int) {
			p.str(slots[i].Name)
			p.decimal(slots[i].Amount)
		})
	})
	p.op(opTuple2)
	p.memoize()
	p.op(opBuild)
	return p.finish()
}

// PickleSlotName returns pickle.dumps(SlotName(name), protocol=5) for a
// SlotName that was never parsed: NEWOBJ(SlotName, (name,)) then
// BUILD(({"data": name}, {"_device_name": "", ..., "_parsed": False})).
func PickleSlotName(name SlotName) []byte {
	p := newPickler()
	p.global(typesModule, "SlotName")
	nameID := p.freshString(string(name))
	p.op(opTuple1)
	p.memoize()
	p.op(opNewObj)
	p.memoize()
	p.op(opEmptyDict)
	p.memoize()
	p.dictItems(1, func(int) {
		p.str("data")
		p.get(nameID) // UserString.data is the very string passed to __new__
	})
	p.op(opEmptyDict)
	p.memoize()
	slotState := []string{"_device_name", "_major_type", "_minor_type"}
	p.dictItems(len(slotState)+1, func(i int) {
		if i < len(slotState) {
			p.str(slotState[i])
			p.str("")
			return
		}
		p.str("_parsed")
		p.bool(false)
	})
	p.op(opTuple2)
	p.memoize()
	p.op(opBuild)
	return p.finish()
}

// PickleImageRef returns pickle.dumps(ImageRef(...), protocol=5) for the
// plain dataclass: NEWOBJ(ImageRef, ()) then BUILD({field: value}).
func PickleImageRef(ref ImageRef) []byte {
	p := newPickler()
	p.global(dockerModule, "ImageRef")
	p.op(opEmptyTuple, opNewObj)
	p.memoize()
	p.op(opEmptyDict)
	p.memoize()
	fields := []struct{ key, value string }{
		{"name", ref.Name}, {"project", ref.Project}, {"tag", ref.Tag},
		{"registry", ref.Registry}, {"architecture", ref.Architecture},
	}
	p.dictItems(len(fields)+1, func(i int) {
		if i < len(fields) {
			p.str(fields[i].key)
			p.str(fields[i].value)
			return
		}
		p.str("is_local")
		p.bool(ref.IsLocal)
	})
	p.op(opBuild)
	return p.finish()
}
