// Package callosum speaks the RPC wire protocol of lablup/callosum 1.0.3 over
// ZeroMQ, as Backend.AI's manager and agent use it: frames, the msgpack header
// and body, the PING/PONG handshake, optional CURVE authentication with a ZAP
// handler, a ROUTER server and a DEALER client.
package callosum

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/golang/snappy"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// MessageType is the header's "type" (callosum rpc/message.py).
type MessageType uint8

// The message types of callosum 1.0.3.
const (
	TypeNull      MessageType = 0
	TypeFunction  MessageType = 1
	TypeResult    MessageType = 2
	TypeFailure   MessageType = 3 // the handler raised
	TypeError     MessageType = 4 // the RPC layer itself failed
	TypeCancel    MessageType = 5 // client side
	TypeCancelled MessageType = 6 // server side
)

func (t MessageType) String() string {
	names := [...]string{"NULL", "FUNCTION", "RESULT", "FAILURE", "ERROR", "CANCEL", "CANCELLED"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Frame types of the first frame after the peer identity.
const (
	FrameUpper = "UPPER"
	FramePing  = "PING"
	FramePong  = "PONG"
)

// OrderKey is the header's "okey". The manager's PeerInvoker sends b"" as
// msgpack bin and the legacy path sends "" as str; a reply must carry the
// same msgpack type, because the client matches (meth, okey, seq).
type OrderKey struct {
	Value string
	IsStr bool
}

// Header is frame 1 of a message.
type Header struct {
	Type     MessageType
	Method   string
	OrderKey OrderKey
	// Seq is uint32 upstream (it wraps at 2^32); it is kept wider so that an
	// odd peer's value is still echoed unchanged.
	Seq uint64
	Zip bool
}

// Encode writes the header as callosum does: a 5-entry map in the order
// type, meth, okey, seq, zip, with ints in their smallest form.
func (h Header) Encode() []byte {
	var buf bytes.Buffer
	buf.Grow(40 + len(h.Method) + len(h.OrderKey.Value))
	enc := msgpack.NewEncoder(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_ = enc.EncodeMapLen(5)
	_ = enc.EncodeString("type")
	_ = enc.EncodeUint(uint64(h.Type))
	_ = enc.EncodeString("meth")
	_ = enc.EncodeString(h.Method)
	_ = enc.EncodeString("okey")
	if h.OrderKey.IsStr {
		_ = enc.EncodeString(h.OrderKey.Value)
	} else {
		_ = enc.EncodeBytes([]byte(h.OrderKey.Value))
	}
	_ = enc.EncodeString("seq")
	_ = enc.EncodeUint(h.Seq)
	_ = enc.EncodeString("zip")
	_ = enc.EncodeBool(h.Zip)
	return buf.Bytes()
}

// Reply returns the header of a reply of type t to h: meth, okey and seq
// unchanged, and the same compression as the request.
func (h Header) Reply(t MessageType) Header {
	h.Type = t
	return h
}

// HeaderError is a header that could not be decoded. Addressable tells
// whether meth, okey and seq were read, so that an ERROR reply can still be
// matched by the peer.
type HeaderError struct {
	Partial     Header
	Addressable bool
	Err         error
}

func (e *HeaderError) Error() string { return "callosum header: " + e.Err.Error() }
func (e *HeaderError) Unwrap() error { return e.Err }

// DecodeHeader reads frame 1. Keys may come in any order; unknown keys are
// skipped; all five keys are required.
func DecodeHeader(frame []byte) (Header, error) {
	var h Header
	var seen [5]bool // type, meth, okey, seq, zip
	r := bytes.NewReader(frame)
	dec, release := wiremsg.NewDecoder(r)
	defer release()
	fail := func(err error) (Header, error) {
		return h, &HeaderError{Partial: h, Addressable: seen[1] && seen[2] && seen[3], Err: err}
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return fail(fmt.Errorf("not a map: %w", err))
	}
	if n < 0 || n > 16 {
		return fail(fmt.Errorf("map of %d entries", n))
	}
	for i := 0; i < n; i++ {
		key, err := dec.DecodeString()
		if err != nil {
			return fail(fmt.Errorf("key %d: %w", i, err))
		}
		switch key {
		case "type":
			v, err := dec.DecodeUint64()
			if err != nil || v > math.MaxUint8 {
				return fail(fmt.Errorf("type: %v (%w)", v, errOr(err, "out of range")))
			}
			h.Type, seen[0] = MessageType(v), true
		case "meth":
			if h.Method, err = dec.DecodeString(); err != nil {
				return fail(fmt.Errorf("meth: %w", err))
			}
			seen[1] = true
		case "okey":
			code, err := dec.PeekCode()
			if err != nil {
				return fail(fmt.Errorf("okey: %w", err))
			}
			switch {
			case msgpcode.IsString(code):
				s, err := dec.DecodeString()
				if err != nil {
					return fail(fmt.Errorf("okey: %w", err))
				}
				h.OrderKey = OrderKey{Value: s, IsStr: true}
			case msgpcode.IsBin(code):
				b, err := dec.DecodeBytes()
				if err != nil {
					return fail(fmt.Errorf("okey: %w", err))
				}
				h.OrderKey = OrderKey{Value: string(b)}
			default:
				return fail(fmt.Errorf("okey: msgpack code 0x%02x, want str or bin", code))
			}
			seen[2] = true
		case "seq":
			if h.Seq, err = dec.DecodeUint64(); err != nil {
				return fail(fmt.Errorf("seq: %w", err))
			}
			seen[3] = true
		case "zip":
			if h.Zip, err = dec.DecodeBool(); err != nil {
				return fail(fmt.Errorf("zip: %w", err))
			}
			seen[4] = true
		default:
			if err := dec.Skip(); err != nil {
				return fail(fmt.Errorf("%q: %w", key, err))
			}
		}
	}
	for i, name := range [...]string{"type", "meth", "okey", "seq", "zip"} {
		if !seen[i] {
			return fail(fmt.Errorf("missing %q", name))
		}
	}
	if r.Len() != 0 {
		return fail(fmt.Errorf("%d trailing bytes", r.Len()))
	}
	return h, nil
}

func errOr(err error, text string) error {
	if err != nil {
		return err
	}
	return errors.New(text)
}

// Metadata of the message types (callosum's TupleEncodingMixin).
var (
	// MetaFunction is FunctionMetadata: None, sent as b"".
	MetaFunction = []byte{}
	// MetaEmpty is ResultMetadata/NullMetadata: an empty msgpack array.
	MetaEmpty = []byte{0x90}
)

// ErrorInfo is the FAILURE/ERROR metadata: [name, repr, traceback].
type ErrorInfo struct {
	Name      string
	Repr      string
	Traceback string
}

// Encode writes the metadata array of exactly three strings.
func (e ErrorInfo) Encode() []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeArrayLen(3)
	_ = enc.EncodeString(e.Name)
	_ = enc.EncodeString(e.Repr)
	_ = enc.EncodeString(e.Traceback)
	return buf.Bytes()
}

// DecodeErrorInfo reads FAILURE/ERROR metadata.
func DecodeErrorInfo(meta []byte) (ErrorInfo, error) {
	dec, release := wiremsg.NewDecoder(bytes.NewReader(meta))
	defer release()
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return ErrorInfo{}, fmt.Errorf("error metadata: %w", err)
	}
	if n != 3 {
		return ErrorInfo{}, fmt.Errorf("error metadata has %d fields, want 3", n)
	}
	var info ErrorInfo
	for _, dst := range []*string{&info.Name, &info.Repr, &info.Traceback} {
		if *dst, err = dec.DecodeString(); err != nil {
			return ErrorInfo{}, fmt.Errorf("error metadata: %w", err)
		}
	}
	return info, nil
}

// EncodeBody writes frame 2: {"meta": bin, "body": bin or nil}, snappy
// (raw block format) compressed when zip is set. A nil payload is nil.
func EncodeBody(meta, payload []byte, zip bool) []byte {
	var buf bytes.Buffer
	buf.Grow(16 + len(meta) + len(payload))
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeMapLen(2)
	_ = enc.EncodeString("meta")
	_ = enc.EncodeBytes(nonNil(meta))
	_ = enc.EncodeString("body")
	if payload == nil {
		_ = enc.EncodeNil()
	} else {
		_ = enc.EncodeBytes(payload)
	}
	if zip {
		return snappy.Encode(nil, buf.Bytes())
	}
	return buf.Bytes()
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ErrBodyTooLarge is returned for bodies above the configured maximum.
var ErrBodyTooLarge = errors.New("callosum body too large")

// DecodeBody reads frame 2, decompressing it when zip is set. maxSize bounds
// the decompressed size (0 means no bound). payload is nil when the body
// field is msgpack nil.
func DecodeBody(frame []byte, zip bool, maxSize int) (meta, payload []byte, err error) {
	if maxSize > 0 && len(frame) > maxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, max %d", ErrBodyTooLarge, len(frame), maxSize)
	}
	if zip {
		n, err := snappy.DecodedLen(frame)
		if err != nil {
			return nil, nil, fmt.Errorf("callosum body: snappy: %w", err)
		}
		if maxSize > 0 && n > maxSize {
			return nil, nil, fmt.Errorf("%w: %d bytes uncompressed, max %d", ErrBodyTooLarge, n, maxSize)
		}
		if frame, err = snappy.Decode(nil, frame); err != nil {
			return nil, nil, fmt.Errorf("callosum body: snappy: %w", err)
		}
	}
	r := bytes.NewReader(frame)
	dec, release := wiremsg.NewDecoder(r)
	defer release()
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, nil, fmt.Errorf("callosum body: not a map: %w", err)
	}
	if n < 0 || n > 16 {
		return nil, nil, fmt.Errorf("callosum body: map of %d entries", n)
	}
	var seenMeta, seenBody bool
	for i := 0; i < n; i++ {
		key, err := dec.DecodeString()
		if err != nil {
			return nil, nil, fmt.Errorf("callosum body: key %d: %w", i, err)
		}
		switch key {
		case "meta", "body":
			code, err := dec.PeekCode()
			if err != nil {
				return nil, nil, fmt.Errorf("callosum body: %s: %w", key, err)
			}
			var value []byte
			if code != msgpcode.Nil {
				if !msgpcode.IsBin(code) && !msgpcode.IsString(code) {
					return nil, nil, fmt.Errorf("callosum body: %s: msgpack code 0x%02x, want bin", key, code)
				}
				if value, err = dec.DecodeBytes(); err != nil {
					return nil, nil, fmt.Errorf("callosum body: %s: %w", key, err)
				}
				value = nonNil(value)
			} else if err := dec.DecodeNil(); err != nil {
				return nil, nil, err
			}
			if key == "meta" {
				meta, seenMeta = value, true
			} else {
				payload, seenBody = value, true
			}
		default:
			if err := dec.Skip(); err != nil {
				return nil, nil, fmt.Errorf("callosum body: %q: %w", key, err)
			}
		}
	}
	if !seenMeta || !seenBody {
		return nil, nil, errors.New("callosum body: want keys meta and body")
	}
	if r.Len() != 0 {
		return nil, nil, fmt.Errorf("callosum body: %d trailing bytes", r.Len())
	}
	return meta, payload, nil
}
