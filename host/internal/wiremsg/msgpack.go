package wiremsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"slices"
	"time"

	"github.com/shopspring/decimal"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// maxDepth bounds nesting so that a hostile body cannot exhaust the stack.
const maxDepth = 256

// Unmarshal decodes one application msgpack value, with the upstream ext
// types turned into Go values: msgpack str -> string, bin -> []byte,
// array -> []any, map -> Map, ints -> int64 (uint64 above MaxInt64).
// Trailing bytes are an error, as in Python's unpackb.
func Unmarshal(data []byte) (any, error) {
	r := bytes.NewReader(data)
	dec, release := NewDecoder(r)
	defer release()
	v, err := decodeValue(dec, r, 0)
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("msgpack: %d trailing bytes", r.Len())
	}
	return v, nil
}

// pooledDecoderMax is the largest input decoded with a pooled decoder: a
// decoder keeps the scratch buffer its longest string needed, and a pooled
// one must not keep a large body's.
const pooledDecoderMax = 64 << 10

// NewDecoder returns a msgpack decoder over r, from msgpack's pool when r
// is small (the RPC path decodes a header, a body and an envelope per
// call); release gives it back and must be called once, after which
// neither the decoder nor r may be used.
func NewDecoder(r *bytes.Reader) (dec *msgpack.Decoder, release func()) {
	if r.Len() > pooledDecoderMax {
		return msgpack.NewDecoder(r), func() {}
	}
	dec = msgpack.GetDecoder()
	dec.Reset(r)
	return dec, func() { msgpack.PutDecoder(dec) }
}

func decodeValue(dec *msgpack.Decoder, r *bytes.Reader, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("msgpack: nested too deeply")
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil, fmt.Errorf("msgpack: %w", eofAsUnexpected(err))
	}
	switch {
	case c == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		return dec.DecodeBool()
	case c == msgpcode.Uint64:
		u, err := dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		return dec.DecodeInt64()
	case c == msgpcode.Float || c == msgpcode.Double:
		return dec.DecodeFloat64()
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		if err := checkClaimedLength(c, r); err != nil {
			return nil, err
		}
	}
	switch {
	case msgpcode.IsString(c):
		s, err := dec.DecodeString()
		return s, eofAsUnexpected(err)
	case msgpcode.IsBin(c):
		b, err := dec.DecodeBytes()
		if b == nil && err == nil {
			b = []byte{}
		}
		return b, eofAsUnexpected(err)
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if n > r.Len() { // every element takes at least one byte
			return nil, fmt.Errorf("msgpack: array of %d elements in %d bytes", n, r.Len())
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = decodeValue(dec, r, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		if n > r.Len()/2 {
			return nil, fmt.Errorf("msgpack: map of %d entries in %d bytes", n, r.Len())
		}
		out := make(Map, n)
		for i := 0; i < n; i++ {
			k, err := decodeValue(dec, r, depth+1)
			if err != nil {
				return nil, err
			}
			key, err := mapKey(k)
			if err != nil {
				return nil, err
			}
			if out[key], err = decodeValue(dec, r, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case msgpcode.IsExt(c):
		code, n, err := dec.DecodeExtHeader()
		if err != nil {
			return nil, eofAsUnexpected(err)
		}
		if n > r.Len() {
			return nil, fmt.Errorf("msgpack: ext %d of %d bytes truncated", code, n)
		}
		payload := make([]byte, n)
		if err := dec.ReadFull(payload); err != nil {
			return nil, eofAsUnexpected(err)
		}
		v, err := decodeExt(code, payload)
		if err != nil {
			return nil, fmt.Errorf("msgpack ext %d: %w", code, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("msgpack: invalid code 0x%02x", c)
}

// checkClaimedLength refuses a str or bin whose length header claims more
// bytes than remain, before the decoder allocates for it.
func checkClaimedLength(c byte, r *bytes.Reader) error {
	var size int
	switch c {
	case msgpcode.Str8, msgpcode.Bin8:
		size = 1
	case msgpcode.Str16, msgpcode.Bin16:
		size = 2
	case msgpcode.Str32, msgpcode.Bin32:
		size = 4
	default:
		return nil // fixstr: at most 31 bytes
	}
	var header [5]byte
	n, _ := r.ReadAt(header[:1+size], r.Size()-int64(r.Len()))
	if n < 1+size {
		return io.ErrUnexpectedEOF
	}
	var length int
	for _, b := range header[1 : 1+size] {
		length = length<<8 | int(b)
	}
	if length > r.Len()-1-size {
		return fmt.Errorf("msgpack: %d-byte string in %d bytes: %w", length, r.Len(), io.ErrUnexpectedEOF)
	}
	return nil
}

func eofAsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mapKey makes a decoded key usable in a Go map.
func mapKey(k any) (any, error) {
	switch key := k.(type) {
	case []byte:
		return Bin(key), nil
	case []any, Map, ResourceSlot:
		return nil, fmt.Errorf("msgpack: unsupported map key of type %T", k)
	case float64:
		if math.IsNaN(key) {
			return nil, errors.New("msgpack: NaN map key")
		}
	}
	// A decoded value can be of a comparable type and still hold a slice
	// (an Enum whose pickled value is a tuple); using it as a key would panic.
	if !hashable(reflect.ValueOf(k)) {
		return nil, fmt.Errorf("msgpack: unhashable map key of type %T", k)
	}
	return k, nil
}

// hashable reports whether v can be a Go map key at run time.
func hashable(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Invalid:
		return true
	case reflect.Slice, reflect.Map, reflect.Func:
		return false
	case reflect.Interface:
		return v.IsNil() || hashable(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if !hashable(v.Field(i)) {
				return false
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			if !hashable(v.Index(i)) {
				return false
			}
		}
	}
	return true
}

func decodeExt(code int8, payload []byte) (any, error) {
	switch code {
	case ExtUUID:
		if len(payload) != 16 {
			return nil, fmt.Errorf("uuid of %d bytes", len(payload))
		}
		return UUID(payload), nil
	case ExtDatetime:
		return decodeTemporenc(payload)
	case ExtPosixPath:
		return PosixPath(payload), nil
	case ExtPurePosixPath:
		return PurePosixPath(payload), nil
	case ExtAutoDirectoryPath:
		return AutoDirectoryPath(payload), nil
	case ExtDecimal, ExtEnum, ExtImageRef, ExtResourceSlot, ExtSlotName, ExtBinarySize:
		return decodePickledExt(code, payload)
	}
	return nil, errors.New("unknown ext type")
}

// Marshal encodes v as ai.backend.common.msgpack.packb would
// (use_bin_type): str as str, []byte (nil included: Python bytes are never
// None) and Bin as bin, ints in their smallest form, float64 as float 64,
// Tuple and slices as arrays, Dict in its order, map[string]any and
// map[string]string sorted by key, Map in Go's order. UUID, the paths and
// Ext are ext types with their bytes; Decimal, Enum, ImageRef,
// ResourceSlot, SlotName and BinarySize are ext types holding their
// pickles (Pickle). A time.Time is written as its RFC 3339 string: packb
// writes datetimes as temporenc (ext 2), which the agent never sends.
func Marshal(v any) ([]byte, error) {
	var w msgpackWriter
	if err := w.value(v, 0); err != nil {
		return nil, err
	}
	return w.buf, nil
}

type msgpackWriter struct{ buf []byte }

func (w *msgpackWriter) byte1(b byte) { w.buf = append(w.buf, b) }

func (w *msgpackWriter) be16(b byte, n uint16) {
	w.buf = binary.BigEndian.AppendUint16(append(w.buf, b), n)
}

func (w *msgpackWriter) be32(b byte, n uint32) {
	w.buf = binary.BigEndian.AppendUint32(append(w.buf, b), n)
}

func (w *msgpackWriter) be64(b byte, n uint64) {
	w.buf = binary.BigEndian.AppendUint64(append(w.buf, b), n)
}

func (w *msgpackWriter) uint(n uint64) {
	switch {
	case n < 128:
		w.byte1(byte(n))
	case n <= math.MaxUint8:
		w.buf = append(w.buf, msgpcode.Uint8, byte(n))
	case n <= math.MaxUint16:
		w.be16(msgpcode.Uint16, uint16(n))
	case n <= math.MaxUint32:
		w.be32(msgpcode.Uint32, uint32(n))
	default:
		w.be64(msgpcode.Uint64, n)
	}
}

func (w *msgpackWriter) int(n int64) {
	switch {
	case n >= 0:
		w.uint(uint64(n))
	case n >= -32:
		w.byte1(byte(n))
	case n >= math.MinInt8:
		w.buf = append(w.buf, msgpcode.Int8, byte(n))
	case n >= math.MinInt16:
		w.be16(msgpcode.Int16, uint16(n))
	case n >= math.MinInt32:
		w.be32(msgpcode.Int32, uint32(n))
	default:
		w.be64(msgpcode.Int64, uint64(n))
	}
}

// lengthHeader writes the header of a str, bin, array or map of n items:
// the fix form (fix|n) below fixLimit, then the 8-, 16- and 32-bit forms
// (code8 0: the type has no 8-bit form), the smallest that fits.
func (w *msgpackWriter) lengthHeader(n, fixLimit int, fix, code8, code16, code32 byte) {
	switch {
	case n < fixLimit:
		w.byte1(fix | byte(n))
	case code8 != 0 && n <= math.MaxUint8:
		w.buf = append(w.buf, code8, byte(n))
	case n <= math.MaxUint16:
		w.be16(code16, uint16(n))
	default:
		w.be32(code32, uint32(n))
	}
}

func (w *msgpackWriter) str(s string) {
	w.lengthHeader(len(s), 32, msgpcode.FixedStrLow, msgpcode.Str8, msgpcode.Str16, msgpcode.Str32)
	w.buf = append(w.buf, s...)
}

func (w *msgpackWriter) bin(b []byte) {
	w.lengthHeader(len(b), 0, 0, msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32)
	w.buf = append(w.buf, b...)
}

func (w *msgpackWriter) arrayHeader(n int) {
	w.lengthHeader(n, 16, msgpcode.FixedArrayLow, 0, msgpcode.Array16, msgpcode.Array32)
}

func (w *msgpackWriter) mapHeader(n int) {
	w.lengthHeader(n, 16, msgpcode.FixedMapLow, 0, msgpcode.Map16, msgpcode.Map32)
}

// ext writes an ext value in msgpack-python's choice of header.
func (w *msgpackWriter) ext(code int8, payload []byte) {
	switch n := len(payload); {
	case n == 1:
		w.byte1(msgpcode.FixExt1)
	case n == 2:
		w.byte1(msgpcode.FixExt2)
	case n == 4:
		w.byte1(msgpcode.FixExt4)
	case n == 8:
		w.byte1(msgpcode.FixExt8)
	case n == 16:
		w.byte1(msgpcode.FixExt16)
	case n <= math.MaxUint8:
		w.buf = append(w.buf, msgpcode.Ext8, byte(n))
	case n <= math.MaxUint16:
		w.be16(msgpcode.Ext16, uint16(n))
	default:
		w.be32(msgpcode.Ext32, uint32(n))
	}
	w.buf = append(w.buf, byte(code))
	w.buf = append(w.buf, payload...)
}

// dictType is what a slice of KV of another named type converts to.
var dictType = reflect.TypeFor[Dict]()

func (w *msgpackWriter) value(v any, depth int) error {
	if depth > maxDepth {
		return errors.New("msgpack: nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		w.byte1(msgpcode.Nil)
	case bool:
		if x {
			w.byte1(msgpcode.True)
		} else {
			w.byte1(msgpcode.False)
		}
	case int:
		w.int(int64(x))
	case int32:
		w.int(int64(x))
	case int64:
		w.int(x)
	case uint:
		w.uint(uint64(x))
	case uint16:
		w.uint(uint64(x))
	case uint32:
		w.uint(uint64(x))
	case uint64:
		w.uint(x)
	case *big.Int:
		if !x.IsInt64() {
			return fmt.Errorf("msgpack: integer %s out of range", x)
		}
		w.int(x.Int64())
	case float64:
		w.be64(msgpcode.Double, math.Float64bits(x))
	case string:
		w.str(x)
	case []byte:
		w.bin(x)
	case Bin:
		w.bin([]byte(x))
	case time.Time:
		w.str(x.Format(time.RFC3339Nano))
	case UUID:
		w.ext(ExtUUID, x[:])
	case PosixPath:
		w.ext(ExtPosixPath, []byte(x))
	case PurePosixPath:
		w.ext(ExtPurePosixPath, []byte(x))
	case AutoDirectoryPath:
		w.ext(ExtAutoDirectoryPath, []byte(x))
	case Ext:
		w.ext(x.Code, x.Data)
	case decimal.Decimal, Enum, ImageRef, ResourceSlot, SlotName, BinarySize:
		e, err := Pickle(x)
		if err != nil {
			return fmt.Errorf("msgpack: %w", err)
		}
		w.ext(e.Code, e.Data)
	case Tuple:
		return w.array([]any(x), depth)
	case []any:
		return w.array(x, depth)
	case []string:
		w.arrayHeader(len(x))
		for _, s := range x {
			w.str(s)
		}
	case Dict:
		w.mapHeader(len(x))
		for _, kv := range x {
			if err := w.value(kv.Key, depth+1); err != nil {
				return err
			}
			if err := w.value(kv.Value, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		return writeSorted(w, x, depth)
	case map[string]string:
		return writeSorted(w, x, depth)
	case Map:
		w.mapHeader(len(x))
		for k, item := range x {
			if err := w.value(k, depth+1); err != nil {
				return err
			}
			if err := w.value(item, depth+1); err != nil {
				return err
			}
		}
	default:
		return w.reflected(v, depth)
	}
	return nil
}

// reflected writes a slice of another named type: a slice of KV as the
// Dict it is, any other as an array.
func (w *msgpackWriter) reflected(v any, depth int) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return fmt.Errorf("msgpack: cannot encode %T", v)
	}
	if rv.Type().ConvertibleTo(dictType) {
		return w.value(rv.Convert(dictType).Interface(), depth)
	}
	items := make([]any, rv.Len())
	for i := range items {
		items[i] = rv.Index(i).Interface()
	}
	return w.array(items, depth)
}

// writeSorted writes a map with string keys in sorted key order, so that
// the bytes do not depend on Go's map order.
func writeSorted[V any](w *msgpackWriter, m map[string]V, depth int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.mapHeader(len(keys))
	for _, k := range keys {
		w.str(k)
		if err := w.value(m[k], depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *msgpackWriter) array(items []any, depth int) error {
	w.arrayHeader(len(items))
	for _, item := range items {
		if err := w.value(item, depth+1); err != nil {
			return err
		}
	}
	return nil
}
