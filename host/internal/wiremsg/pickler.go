package wiremsg

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// The pickler below writes protocol-5 pickles as CPython's C pickler does
// (Modules/_pickle.c): the same opcodes, memo slots and frames, so that
// the bytes match pickle.dumps(obj, protocol=5) exactly.

// Pickle opcodes the pickler emits.
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
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opLong1           = 0x8a
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
	case n <= math.MaxUint32:
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

// int writes an int as save_long does: BININT1, BININT2 or BININT when it
// fits a signed 4-byte integer, else LONG1 with the shortest two's
// complement bytes. Small ints are not memoized.
func (p *pickler) int(n int64) {
	switch {
	case n >= 0 && n <= math.MaxUint8:
		p.op(opBinInt1, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		p.op(opBinInt2, byte(n), byte(n>>8))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		var b [5]byte
		b[0] = opBinInt
		binary.LittleEndian.PutUint32(b[1:], uint32(int32(n)))
		p.op(b[:]...)
	default:
		// _PyLong_NumBits(|n|)/8 + 1 bytes, less a redundant sign byte.
		magnitude := uint64(n)
		if n < 0 {
			magnitude = -magnitude
		}
		size := bits.Len64(magnitude)/8 + 1
		var le [9]byte
		binary.LittleEndian.PutUint64(le[:], uint64(n))
		if n < 0 {
			le[8] = 0xff
		}
		if n < 0 && size > 1 && le[size-1] == 0xff && le[size-2]&0x80 != 0 {
			size--
		}
		p.op(opLong1, byte(size))
		p.op(le[:size]...)
	}
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
