package callosum

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// The ping("ping") exchange of spec §2, hand-encoded and as callosum 1.0.3 sends it.
const (
	goldenRequestHeader = "85a47479706501a46d657468a470696e67a46f6b6579c400a373657100a37a6970c2"
	goldenRequestBody   = "82a46d657461c400a4626f6479c41482a46172677391a470696e67a66b776172677380"
	goldenReplyHeader   = "85a47479706502a46d657468a470696e67a46f6b6579c400a373657100a37a6970c2"
	goldenReplyBody     = "82a46d657461c40190a4626f6479c405a470696e67"
)

func TestGoldenPingBytes(t *testing.T) {
	handEncodedRequestHeader := []byte("\x85\xa4type\x01\xa4meth\xa4ping\xa4okey\xc4\x00\xa3seq\x00\xa3zip\xc2")
	handEncodedRequestBody := []byte("\x82\xa4meta\xc4\x00\xa4body\xc4\x14\x82\xa4args\x91\xa4ping\xa6kwargs\x80")
	handEncodedReplyBody := []byte("\x82\xa4meta\xc4\x01\x90\xa4body\xc4\x05\xa4ping")
	request := Header{Type: TypeFunction, Method: "ping", OrderKey: OrderKey{}, Seq: 0}
	envelope, err := EncodeEnvelope([]any{"ping"}, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		description string
		got         []byte
		want        [][]byte
	}{
		{"request header", request.Encode(), [][]byte{handEncodedRequestHeader, mustHex(t, goldenRequestHeader)}},
		{"request body", EncodeBody(MetaFunction, envelope, false), [][]byte{handEncodedRequestBody, mustHex(t, goldenRequestBody)}},
		{"reply header", request.Reply(TypeResult).Encode(), [][]byte{mustHex(t, goldenReplyHeader)}},
		{"reply body", EncodeBody(MetaEmpty, []byte("\xa4ping"), false), [][]byte{handEncodedReplyBody, mustHex(t, goldenReplyBody)}},
	}
	for _, tc := range cases {
		for _, want := range tc.want {
			if !bytes.Equal(tc.got, want) {
				t.Errorf("%s: got %x, want %x", tc.description, tc.got, want)
			}
		}
	}
}

func TestDecodeHeader(t *testing.T) {
	cases := []struct {
		description string
		frame       []byte
		want        Header
		wantErr     bool
		addressable bool
	}{
		{description: "callosum 1.0.3 request", frame: mustHex(t, goldenRequestHeader),
			want: Header{Type: TypeFunction, Method: "ping", Seq: 0}},
		{description: "legacy str okey and large seq", frame: Header{Type: TypeFunction, Method: "m", OrderKey: OrderKey{IsStr: true}, Seq: 1<<32 - 1}.Encode(),
			want: Header{Type: TypeFunction, Method: "m", OrderKey: OrderKey{IsStr: true}, Seq: 1<<32 - 1}},
		{description: "keys in another order", frame: []byte("\x85\xa3zip\xc3\xa3seq\x07\xa4okey\xa1k\xa4meth\xa1m\xa4type\x01"),
			want: Header{Type: TypeFunction, Method: "m", OrderKey: OrderKey{Value: "k", IsStr: true}, Seq: 7, Zip: true}},
		{description: "garbage", frame: []byte("\xff\x00garbage"), wantErr: true},
		{description: "missing zip but addressable", frame: []byte("\x84\xa4type\x01\xa4meth\xa1m\xa4okey\xc4\x00\xa3seq\x05"), wantErr: true, addressable: true},
		{description: "okey of wrong type", frame: []byte("\x85\xa4type\x01\xa4meth\xa1m\xa4okey\x01\xa3seq\x05\xa3zip\xc2"), wantErr: true},
		{description: "trailing bytes", frame: append(mustHex(t, goldenRequestHeader), 0), wantErr: true, addressable: true},
	}
	for _, tc := range cases {
		got, err := DecodeHeader(tc.frame)
		if tc.wantErr {
			var herr *HeaderError
			if !errors.As(err, &herr) {
				t.Errorf("%s: got %v, want a HeaderError", tc.description, err)
				continue
			}
			if herr.Addressable != tc.addressable {
				t.Errorf("%s: addressable = %v, want %v", tc.description, herr.Addressable, tc.addressable)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.description, got, err, tc.want)
		}
		if reencoded := got.Encode(); !tc.wantErr && tc.description != "keys in another order" && !bytes.Equal(reencoded, tc.frame) {
			t.Errorf("%s: re-encoded %x, want %x", tc.description, reencoded, tc.frame)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	plain := EncodeBody(MetaEmpty, []byte("\xa4ping"), false)
	cases := []struct {
		description string
		frame       []byte
		zip         bool
		max         int
		wantMeta    []byte
		wantPayload []byte
		wantErr     error
	}{
		{description: "golden request", frame: mustHex(t, goldenRequestBody), wantMeta: []byte{}, wantPayload: mustHex(t, "82a46172677391a470696e67a66b776172677380")},
		{description: "snappy", frame: EncodeBody(MetaEmpty, []byte("\xa4ping"), true), zip: true, wantMeta: MetaEmpty, wantPayload: []byte("\xa4ping")},
		{description: "nil body of a failure", frame: EncodeBody(ErrorInfo{"E", "E()", "tb"}.Encode(), nil, false), wantMeta: ErrorInfo{"E", "E()", "tb"}.Encode()},
		{description: "truncated", frame: plain[:len(plain)-2], wantErr: errAny},
		{description: "zip flag on plain bytes", frame: plain, zip: true, wantErr: errAny},
		{description: "too large", frame: plain, max: 4, wantErr: ErrBodyTooLarge},
		{description: "too large once decompressed", frame: EncodeBody(nil, make([]byte, 1000), true), zip: true, max: 100, wantErr: ErrBodyTooLarge},
	}
	for _, tc := range cases {
		meta, payload, err := DecodeBody(tc.frame, tc.zip, tc.max)
		switch {
		case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
			t.Errorf("%s: err = %v, want %v", tc.description, err, tc.wantErr)
		case tc.wantErr == nil && err != nil:
			t.Errorf("%s: %v", tc.description, err)
		case tc.wantErr == nil && (!bytes.Equal(meta, tc.wantMeta) || !bytes.Equal(payload, tc.wantPayload) || (tc.wantPayload == nil) != (payload == nil)):
			t.Errorf("%s: got meta %x payload %x, want %x %x", tc.description, meta, payload, tc.wantMeta, tc.wantPayload)
		}
	}
}

var errAny = errors.New("any error")

func TestErrorInfoRoundTrip(t *testing.T) {
	in := ErrorInfo{Name: "KeyError", Repr: "KeyError('x')", Traceback: "Traceback...\n"}
	out, err := DecodeErrorInfo(in.Encode())
	if err != nil || out != in {
		t.Fatalf("got %+v, %v", out, err)
	}
	if _, err := DecodeErrorInfo([]byte("\x92\xa1a\xa1b")); err == nil {
		t.Fatal("two-field metadata was accepted")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(mustHex(f, goldenRequestHeader), mustHex(f, goldenRequestBody), false)
	f.Add(mustHex(f, goldenReplyHeader), mustHex(f, goldenReplyBody), false)
	f.Add(Header{Type: TypeFunction, Method: "x", Zip: true}.Encode(), EncodeBody(MetaEmpty, []byte("\xa4ping"), true), true)
	f.Add([]byte("\x85"), []byte("\x82"), false)
	f.Fuzz(func(t *testing.T, header, body []byte, zip bool) {
		if h, err := DecodeHeader(header); err == nil {
			again, err := DecodeHeader(h.Encode())
			if err != nil || again != h {
				t.Fatalf("header does not round-trip: %+v -> %+v, %v", h, again, err)
			}
		}
		meta, _, err := DecodeBody(body, zip, 1<<20)
		if err == nil {
			_, _ = DecodeErrorInfo(meta)
		}
	})
}
