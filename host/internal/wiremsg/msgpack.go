package wiremsg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"sort"
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

// Marshal encodes a reply value as Python's msgpack would (use_bin_type):
// Go strings become str, []byte becomes bin, ints take their smallest form.
// Maps with string keys are written in sorted key order so that replies are
// reproducible. UUIDs and paths use their ext types; Decimal is written as
// its string (a Python peer reads it as str), since encoding it as ext 3
// would need a pickle writer.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := encodeValue(enc, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encodeValue(enc *msgpack.Encoder, v any, depth int) error {
	if depth > maxDepth {
		return errors.New("msgpack: nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(x)
	case int:
		return enc.EncodeInt(int64(x))
	case int32:
		return enc.EncodeInt(int64(x))
	case int64:
		return enc.EncodeInt(x)
	case uint16:
		return enc.EncodeUint(uint64(x))
	case uint32:
		return enc.EncodeUint(uint64(x))
	case uint64:
		return enc.EncodeUint(x)
	case uint:
		return enc.EncodeUint(uint64(x))
	case float64:
		return enc.EncodeFloat64(x)
	case string:
		return enc.EncodeString(x)
	case []byte:
		return enc.EncodeBytes(x)
	case Bin:
		return enc.EncodeBytes([]byte(x))
	case SlotName:
		return enc.EncodeString(string(x))
	case BinarySize:
		return enc.EncodeInt(int64(x))
	case decimal.Decimal:
		return enc.EncodeString(x.String())
	case *big.Int:
		if !x.IsInt64() {
			return fmt.Errorf("msgpack: integer %s out of range", x)
		}
		return enc.EncodeInt(x.Int64())
	case UUID:
		return encodeExt(enc, ExtUUID, x[:])
	case PosixPath:
		return encodeExt(enc, ExtPosixPath, []byte(x))
	case PurePosixPath:
		return encodeExt(enc, ExtPurePosixPath, []byte(x))
	case AutoDirectoryPath:
		return encodeExt(enc, ExtAutoDirectoryPath, []byte(x))
	case Enum:
		return encodeValue(enc, x.Value, depth+1)
	case time.Time:
		return enc.EncodeString(x.Format(time.RFC3339Nano))
	case []any:
		if err := enc.EncodeArrayLen(len(x)); err != nil {
			return err
		}
		for _, item := range x {
			if err := encodeValue(enc, item, depth+1); err != nil {
				return err
			}
		}
		return nil
	case []string:
		if err := enc.EncodeArrayLen(len(x)); err != nil {
			return err
		}
		for _, item := range x {
			if err := enc.EncodeString(item); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for _, k := range keys {
			if err := enc.EncodeString(k); err != nil {
				return err
			}
			if err := encodeValue(enc, x[k], depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return encodeValue(enc, m, depth)
	case ResourceSlot:
		m := make(map[string]any, len(x))
		for k, d := range x {
			m[k] = d
		}
		return encodeValue(enc, m, depth)
	case Map:
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for k, item := range x {
			if err := encodeValue(enc, k, depth+1); err != nil {
				return err
			}
			if err := encodeValue(enc, item, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = rv.Index(i).Interface()
		}
		return encodeValue(enc, items, depth)
	}
	return fmt.Errorf("msgpack: cannot encode %T", v)
}

func encodeExt(enc *msgpack.Encoder, code int8, payload []byte) error {
	if err := enc.EncodeExtHeader(code, len(payload)); err != nil {
		return err
	}
	_, err := enc.Writer().Write(payload)
	return err
}
