package wiremsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
)

// The pickle machine below understands the opcodes CPython emits for plain
// data, globals, reduce/newobj and build (protocols 2 to 5). It never imports
// or calls anything: globals stay symbolic and interpretPickled decides which
// shapes mean which Go value. og-rek was the first choice, but v1.3.0 does not
// implement BUILD, which every ImageRef, ResourceSlot and SlotName pickle uses.

// Symbolic results of the pickle machine.
type (
	pyGlobal struct{ Module, Name string }
	// pyCall is callable(*args) from REDUCE.
	pyCall struct {
		Func any
		Args pyTuple
	}
	// pyObject is cls.__new__(cls, *args) from NEWOBJ, with BUILD's state.
	pyObject struct {
		Class    any
		Args     pyTuple
		State    any
		HasState bool
	}
	pyTuple []any
	pyList  struct{ Items []any }
	pyDict  struct{ Keys, Values []any }
	pyBytes []byte
)

// lookup returns the value stored under a string key.
func (d *pyDict) lookup(key string) (any, bool) {
	for i, k := range d.Keys {
		if s, ok := k.(string); ok && s == key {
			return d.Values[i], true
		}
	}
	return nil, false
}

// Limits that keep a hostile pickle from exhausting memory; the payloads
// Backend.AI sends are a few hundred bytes.
const (
	maxPickleStack = 1 << 12
	maxPickleMemo  = 1 << 12
	maxPickleItems = 1 << 16
)

var errPickleStack = errors.New("pickle: stack underflow")

type pickleMachine struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
	items int
}

// unpickle runs the pickle program in data and returns its result.
func unpickle(data []byte) (any, error) {
	m := &pickleMachine{data: data, memo: map[uint32]any{}}
	for {
		if m.pos >= len(m.data) {
			return nil, errors.New("pickle: missing STOP")
		}
		op := m.data[m.pos]
		m.pos++
		if op == '.' {
			if len(m.stack) != 1 {
				return nil, fmt.Errorf("pickle: STOP with %d values on the stack", len(m.stack))
			}
			return m.stack[0], nil
		}
		if err := m.step(op); err != nil {
			return nil, fmt.Errorf("pickle: opcode 0x%02x at %d: %w", op, m.pos-1, err)
		}
		if len(m.stack) > maxPickleStack {
			return nil, errors.New("pickle: stack too deep")
		}
	}
}

func (m *pickleMachine) read(n int) ([]byte, error) {
	if n < 0 || n > len(m.data)-m.pos {
		return nil, errors.New("truncated")
	}
	b := m.data[m.pos : m.pos+n]
	m.pos += n
	return b, nil
}

func (m *pickleMachine) readUint(size int) (uint64, error) {
	b, err := m.read(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	default:
		return binary.LittleEndian.Uint64(b), nil
	}
}

// readCounted reads a length of lenSize bytes and then that many bytes.
func (m *pickleMachine) readCounted(lenSize int) ([]byte, error) {
	n, err := m.readUint(lenSize)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(m.data)-m.pos) {
		return nil, errors.New("truncated")
	}
	return m.read(int(n))
}

func (m *pickleMachine) push(v any) { m.stack = append(m.stack, v) }

func (m *pickleMachine) pop() (any, error) {
	if len(m.stack) == 0 || (len(m.marks) > 0 && len(m.stack) <= m.marks[len(m.marks)-1]) {
		return nil, errPickleStack
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	return v, nil
}

func (m *pickleMachine) top() (any, error) {
	if len(m.stack) == 0 {
		return nil, errPickleStack
	}
	return m.stack[len(m.stack)-1], nil
}

// popMark returns the values pushed since the last MARK.
func (m *pickleMachine) popMark() ([]any, error) {
	if len(m.marks) == 0 {
		return nil, errors.New("no MARK")
	}
	at := m.marks[len(m.marks)-1]
	m.marks = m.marks[:len(m.marks)-1]
	items := append([]any(nil), m.stack[at:]...)
	m.stack = m.stack[:at]
	return items, nil
}

func (m *pickleMachine) countItems(n int) error {
	m.items += n
	if m.items > maxPickleItems {
		return errors.New("too many items")
	}
	return nil
}

func (m *pickleMachine) memoize(key uint32) error {
	v, err := m.top()
	if err != nil {
		return err
	}
	if _, exists := m.memo[key]; !exists && len(m.memo) >= maxPickleMemo {
		return errors.New("memo too large")
	}
	m.memo[key] = v
	return nil
}

func (m *pickleMachine) recall(key uint32) error {
	v, ok := m.memo[key]
	if !ok {
		return fmt.Errorf("memo key %d not found", key)
	}
	m.push(v)
	return nil
}

// addToTop pops the items of APPEND(S), SETITEM(S) or ADDITEMS (n of them,
// or up to the MARK when n < 0) and adds them to the collection on top of
// the stack, counting them against maxPickleItems.
func addToTop[T any](m *pickleMachine, n int, what string, add func(T, []any) error) error {
	var items []any
	var err error
	if n < 0 {
		items, err = m.popMark()
	} else {
		items, err = m.popN(n)
	}
	if err != nil {
		return err
	}
	target, err := m.top()
	if err != nil {
		return err
	}
	collection, ok := target.(T)
	if !ok {
		return fmt.Errorf("%s %T", what, target)
	}
	if err := m.countItems(len(items)); err != nil {
		return err
	}
	return add(collection, items)
}

func (m *pickleMachine) popN(n int) ([]any, error) {
	out := make([]any, n)
	for i := n - 1; i >= 0; i-- {
		v, err := m.pop()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (m *pickleMachine) step(op byte) error {
	switch op {
	case 0x80: // PROTO
		_, err := m.read(1)
		return err
	case 0x95: // FRAME: a length hint only
		_, err := m.read(8)
		return err
	case '(': // MARK
		m.marks = append(m.marks, len(m.stack))
		if len(m.marks) > maxPickleStack {
			return errors.New("too many marks")
		}
	case '0': // POP
		_, err := m.pop()
		return err
	case '1': // POP_MARK
		_, err := m.popMark()
		return err
	case '2': // DUP
		v, err := m.top()
		if err != nil {
			return err
		}
		m.push(v)
	case 'N':
		m.push(nil)
	case 0x88:
		m.push(true)
	case 0x89:
		m.push(false)
	case 'J': // BININT
		v, err := m.readUint(4)
		if err != nil {
			return err
		}
		m.push(int64(int32(uint32(v))))
	case 'K': // BININT1
		v, err := m.readUint(1)
		if err != nil {
			return err
		}
		m.push(int64(v))
	case 'M': // BININT2
		v, err := m.readUint(2)
		if err != nil {
			return err
		}
		m.push(int64(v))
	case 0x8a, 0x8b: // LONG1, LONG4
		size := 1
		if op == 0x8b {
			size = 4
		}
		b, err := m.readCounted(size)
		if err != nil {
			return err
		}
		m.push(decodeLong(b))
	case 'G': // BINFLOAT, big-endian
		b, err := m.read(8)
		if err != nil {
			return err
		}
		m.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 0x8c, 'X', 0x8d: // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
		size := map[byte]int{0x8c: 1, 'X': 4, 0x8d: 8}[op]
		b, err := m.readCounted(size)
		if err != nil {
			return err
		}
		m.push(string(b))
	case 'C', 'B', 0x8e, 0x96: // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
		size := map[byte]int{'C': 1, 'B': 4, 0x8e: 8, 0x96: 8}[op]
		b, err := m.readCounted(size)
		if err != nil {
			return err
		}
		m.push(pyBytes(append([]byte(nil), b...)))
	case ')':
		m.push(pyTuple{})
	case 0x85, 0x86, 0x87: // TUPLE1..3
		items, err := m.popN(int(op - 0x84))
		if err != nil {
			return err
		}
		m.push(pyTuple(items))
	case 't':
		items, err := m.popMark()
		if err != nil {
			return err
		}
		m.push(pyTuple(items))
	case ']':
		m.push(&pyList{})
	case 'l':
		items, err := m.popMark()
		if err != nil {
			return err
		}
		m.push(&pyList{Items: items})
	case 'a', 'e': // APPEND, APPENDS
		n := -1 // APPENDS: everything since the MARK
		if op == 'a' {
			n = 1
		}
		return addToTop(m, n, "append to", func(list *pyList, items []any) error {
			list.Items = append(list.Items, items...)
			return nil
		})
	case '}', 0x8f: // EMPTY_DICT; EMPTY_SET is kept as a list of items
		if op == '}' {
			m.push(&pyDict{})
		} else {
			m.push(&pyList{})
		}
	case 'd':
		items, err := m.popMark()
		if err != nil {
			return err
		}
		dict := &pyDict{}
		if err := setItems(dict, items); err != nil {
			return err
		}
		m.push(dict)
	case 's', 'u': // SETITEM, SETITEMS
		n := -1
		if op == 's' {
			n = 2 // one key and its value
		}
		return addToTop(m, n, "setitem on", setItems)
	case 0x90: // ADDITEMS
		return addToTop(m, -1, "additems on", func(set *pyList, items []any) error {
			set.Items = append(set.Items, items...)
			return nil
		})
	case 0x91: // FROZENSET
		items, err := m.popMark()
		if err != nil {
			return err
		}
		m.push(&pyList{Items: items})
	case 'c': // GLOBAL "module\nname\n"
		module, err := m.readLine()
		if err != nil {
			return err
		}
		name, err := m.readLine()
		if err != nil {
			return err
		}
		m.push(pyGlobal{Module: module, Name: name})
	case 0x93: // STACK_GLOBAL
		parts, err := m.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := parts[0].(string)
		name, ok2 := parts[1].(string)
		if !ok1 || !ok2 {
			return errors.New("STACK_GLOBAL wants two strings")
		}
		m.push(pyGlobal{Module: module, Name: name})
	case 'R': // REDUCE
		parts, err := m.popN(2)
		if err != nil {
			return err
		}
		args, ok := parts[1].(pyTuple)
		if !ok {
			return fmt.Errorf("REDUCE args are %T", parts[1])
		}
		m.push(&pyCall{Func: parts[0], Args: args})
	case 0x81: // NEWOBJ
		parts, err := m.popN(2)
		if err != nil {
			return err
		}
		args, ok := parts[1].(pyTuple)
		if !ok {
			return fmt.Errorf("NEWOBJ args are %T", parts[1])
		}
		m.push(&pyObject{Class: parts[0], Args: args})
	case 0x92: // NEWOBJ_EX: keyword arguments are not used by these classes
		parts, err := m.popN(3)
		if err != nil {
			return err
		}
		args, ok := parts[1].(pyTuple)
		if !ok {
			return fmt.Errorf("NEWOBJ_EX args are %T", parts[1])
		}
		m.push(&pyObject{Class: parts[0], Args: args})
	case 'b': // BUILD
		state, err := m.pop()
		if err != nil {
			return err
		}
		target, err := m.top()
		if err != nil {
			return err
		}
		obj, ok := target.(*pyObject)
		if !ok {
			return fmt.Errorf("BUILD on %T", target)
		}
		obj.State, obj.HasState = state, true
	case 0x94: // MEMOIZE
		return m.memoize(uint32(len(m.memo)))
	case 'q', 'r': // BINPUT, LONG_BINPUT
		size := 1
		if op == 'r' {
			size = 4
		}
		key, err := m.readUint(size)
		if err != nil {
			return err
		}
		return m.memoize(uint32(key))
	case 'h', 'j': // BINGET, LONG_BINGET
		size := 1
		if op == 'j' {
			size = 4
		}
		key, err := m.readUint(size)
		if err != nil {
			return err
		}
		return m.recall(uint32(key))
	default:
		return errors.New("unsupported opcode")
	}
	return nil
}

func (m *pickleMachine) readLine() (string, error) {
	for i := m.pos; i < len(m.data); i++ {
		if m.data[i] == '\n' {
			line := string(m.data[m.pos:i])
			m.pos = i + 1
			return line, nil
		}
	}
	return "", errors.New("truncated line")
}

func setItems(dict *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return errors.New("odd number of dict items")
	}
	for i := 0; i < len(items); i += 2 {
		dict.Keys = append(dict.Keys, items[i])
		dict.Values = append(dict.Values, items[i+1])
	}
	return nil
}

// decodeLong decodes a little-endian two's complement integer (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(u<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}
