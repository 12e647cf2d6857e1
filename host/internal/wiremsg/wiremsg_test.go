package wiremsg_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/host/internal/wiremsg/wiremsgtest"
)

// The codec follows ai/backend/common/msgpack.py (packb, unpackb and
// ExtTypes) of Backend.AI 26.8.1; the pickles are CPython's.

// extFrame wraps a payload as msgpack ext 8/16/32.
func extFrame(code int8, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 0xff:
		return append([]byte{0xc7, byte(n), byte(code)}, payload...)
	case n <= 0xffff:
		return append([]byte{0xc8, byte(n >> 8), byte(n), byte(code)}, payload...)
	}
	return append([]byte{0xc9, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), byte(code)}, payload...)
}

// equalValues compares decoded values, decimals by value.
func equalValues(a, b any) bool {
	if da, ok := a.(decimal.Decimal); ok {
		db, ok := b.(decimal.Decimal)
		return ok && da.Equal(db)
	}
	if ra, ok := a.(wiremsg.ResourceSlot); ok {
		rb, ok := b.(wiremsg.ResourceSlot)
		if !ok || len(ra) != len(rb) {
			return false
		}
		for i := range ra {
			if ra[i].Name != rb[i].Name || !ra[i].Amount.Equal(rb[i].Amount) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestGoldenDecode reads every golden as the manager's packb framed it.
func TestGoldenDecode(t *testing.T) {
	for _, g := range wiremsgtest.Table() {
		t.Run(g.Name, func(t *testing.T) {
			got, err := wiremsg.Unmarshal(g.Msgpack())
			if err != nil {
				t.Fatal(err)
			}
			if !equalValues(got, g.Value) {
				t.Errorf("got %#v, want %#v", got, g.Value)
			}
			// Truncations must fail cleanly, never panic or succeed.
			payload := g.Payload()
			for cut := 0; cut < len(payload); cut++ {
				if _, err := wiremsg.Unmarshal(extFrame(g.Code, payload[:cut])); err == nil {
					t.Errorf("truncated to %d bytes was accepted", cut)
				}
			}
		})
	}
}

// TestGoldenEncode writes every golden the agent writes, byte for byte.
func TestGoldenEncode(t *testing.T) {
	for _, g := range wiremsgtest.Table() {
		if g.DecodeOnly {
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			ext, err := wiremsg.Pickle(g.Value)
			if err != nil {
				t.Fatal(err)
			}
			if ext.Code != g.Code || !bytes.Equal(ext.Data, g.Payload()) {
				t.Errorf("pickle differs\n got ext %d %x\nwant ext %d %s", ext.Code, ext.Data, g.Code, g.Hex)
			}
			packed, err := wiremsg.Marshal(g.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(packed, g.Msgpack()) {
				t.Errorf("msgpack differs\n got %x\nwant %x", packed, g.Msgpack())
			}
		})
	}
}

func TestUnmarshalExtTypes(t *testing.T) {
	uuidBytes, _ := hex.DecodeString("12345678123456781234567812345678")
	cases := []struct {
		description string
		data        []byte
		want        any
		wantErr     bool
	}{
		{description: "uuid", data: append([]byte{0xd8, 1}, uuidBytes...), want: wiremsg.UUID(uuidBytes)},
		{description: "uuid of 15 bytes", data: extFrame(1, uuidBytes[:15]), wantErr: true},
		{description: "posix path", data: extFrame(4, []byte("/home/work")), want: wiremsg.PosixPath("/home/work")},
		{description: "pure posix path", data: extFrame(5, []byte("a/b")), want: wiremsg.PurePosixPath("a/b")},
		{description: "auto directory path", data: extFrame(17, []byte("/x")), want: wiremsg.AutoDirectoryPath("/x")},
		// temporenc DTSZ with microseconds: 2024-02-29 13:14:15.123456 UTC.
		{description: "datetime DTSZ us", data: extFrame(2, temporencDTSZMicro(2024, 2, 29, 13, 14, 15, 123456, 64)),
			want: time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)},
		{description: "datetime with +09:00", data: extFrame(2, temporencDTSZMicro(2024, 1, 1, 0, 0, 0, 0, 64+36)),
			want: time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", 9*3600))},
		{description: "unknown ext", data: extFrame(42, []byte("x")), wantErr: true},
		{description: "map with uuid key", data: append(append([]byte{0x81, 0xd8, 1}, uuidBytes...), 0xa1, 'v'), want: wiremsg.Map{wiremsg.UUID(uuidBytes): "v"}},
		{description: "bin stays bytes and str stays string", data: []byte{0x92, 0xc4, 1, 'a', 0xa1, 'a'}, want: []any{[]byte("a"), "a"}},
		{description: "32-bit headers", data: []byte{0xdd, 0, 0, 0, 1, 0xdf, 0, 0, 0, 1, 0xdb, 0, 0, 0, 1, 'k', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5}, want: []any{wiremsg.Map{"k": int64(5)}}},
		{description: "trailing bytes", data: []byte{0xc0, 0xc0}, wantErr: true},
		{description: "array longer than input", data: []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, wantErr: true},
	}
	for _, tc := range cases {
		got, err := wiremsg.Unmarshal(tc.data)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tc.description, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			if gt, ok := got.(time.Time); ok && gt.Equal(tc.want.(time.Time)) {
				continue
			}
			t.Errorf("%s: got %#v, want %#v", tc.description, got, tc.want)
		}
	}
}

// temporencDTSZMicro builds a DTSZ value with microsecond precision (9 bytes).
func temporencDTSZMicro(year, month, day, hour, minute, second, micro, zone int) []byte {
	fields := []struct{ value, bits int }{
		{0b111, 3}, {0b01, 2}, {year, 12}, {month - 1, 4}, {day - 1, 5},
		{hour, 5}, {minute, 6}, {second, 6}, {micro, 20}, {zone, 7}, {0, 2},
	}
	out := make([]byte, 9)
	pos := 0
	for _, f := range fields {
		for i := f.bits - 1; i >= 0; i-- {
			if f.value>>uint(i)&1 == 1 {
				out[pos/8] |= 1 << uint(7-pos%8)
			}
			pos++
		}
	}
	return out
}

// orderedKV is a Dict under another name, as a test's own fixture type.
type orderedKV []wiremsg.KV

// TestMarshalRoundTrip checks what Marshal writes by reading it back with
// Unmarshal, the agent's reader of the manager's msgpack.
func TestMarshalRoundTrip(t *testing.T) {
	uuid, _ := wiremsg.ParseUUID("12345678-1234-5678-1234-567812345678")
	dec := decimal.RequireFromString
	cases := []struct {
		description string
		in          any
		want        any
	}{
		{"nested map", map[string]any{"a": []any{int64(1), "x", nil, true}, "b": 2.5}, wiremsg.Map{"a": []any{int64(1), "x", nil, true}, "b": 2.5}},
		{"uuid ext", uuid, uuid},
		{"bytes stay bin", []byte("raw"), []byte("raw")},
		{"nil bytes are empty bytes", []byte(nil), []byte{}},
		{"string slice", []string{"a"}, []any{"a"}},
		{"large negative", int64(-1 << 40), int64(-1 << 40)},
		{"tuple of str, int, nil", wiremsg.Tuple{"k", int64(-1), nil}, []any{"k", int64(-1), nil}},
		{"large and negative ints", wiremsg.Tuple{int64(1) << 40, int64(-200), uint64(300)}, []any{int64(1) << 40, int64(-200), int64(300)}},
		{"float64", 1.5, 1.5},
		{"decimal as ext 3", dec("12.5"), dec("12.5")},
		{"enum as ext 6", wiremsg.SlotTypes("count"), wiremsg.Enum{Module: "ai.backend.common.types", Class: "SlotTypes", Value: "count"}},
		{"int enum as ext 6", wiremsg.Enum{Module: "m", Class: "C", Value: int64(70000)}, wiremsg.Enum{Module: "m", Class: "C", Value: int64(70000)}},
		{"resource slot as ext 8", wiremsg.ResourceSlot{{Name: "cpu", Amount: dec("4")}}, wiremsg.ResourceSlot{{Name: "cpu", Amount: dec("4")}}},
		{"slot name as ext 9", wiremsg.SlotName("cuda.shares"), wiremsg.SlotName("cuda.shares")},
		{"image ref as ext 7", wiremsg.ImageRef{Name: "n", Tag: "t", Registry: "r"}, wiremsg.ImageRef{Name: "n", Tag: "t", Registry: "r"}},
		{"binary size as ext 16", wiremsg.BinarySize(1 << 40), wiremsg.BinarySize(1 << 40)},
		{"ordered map", wiremsg.Dict{{Key: "b", Value: true}, {Key: "a", Value: false}}, wiremsg.Map{"b": true, "a": false}},
		{"a named slice of KV is a dict", orderedKV{{Key: "k", Value: "v"}}, wiremsg.Map{"k": "v"}},
		{"raw ext", wiremsg.Ext{Code: wiremsg.ExtPosixPath, Data: []byte("/p")}, wiremsg.PosixPath("/p")},
		{"long string and array", wiremsg.Tuple{strings.Repeat("x", 40000), make([]any, 20)}, []any{strings.Repeat("x", 40000), make([]any, 20)}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			b, err := wiremsg.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wiremsg.Unmarshal(b)
			if err != nil {
				t.Fatalf("unmarshal %x: %v", b, err)
			}
			if !equalValues(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestMarshalRejectsUnknownTypes(t *testing.T) {
	for _, v := range []any{wiremsg.Tuple{struct{}{}}, wiremsg.Enum{Module: "m", Class: "C", Value: 1.5}} {
		if _, err := wiremsg.Marshal(v); err == nil {
			t.Errorf("Marshal(%#v) succeeded, want an error", v)
		}
	}
}

func TestDictMarshalJSONKeepsOrder(t *testing.T) {
	b, err := json.Marshal(wiremsg.Dict{{Key: "z", Value: decimal.RequireFromString("1.50")}, {Key: "a", Value: wiremsg.SlotTypes("bytes")}, {Key: wiremsg.SlotName("cuda.device"), Value: wiremsg.Tuple{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":"1.5","a":"bytes","cuda.device":[1]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, g := range wiremsgtest.Table() {
		f.Add(g.Msgpack())
	}
	f.Add([]byte("\x82\xa4args\x91\xa4ping\xa6kwargs\x80"))
	f.Add(extFrame(2, temporencDTSZMicro(2024, 2, 29, 13, 14, 15, 1, 64)))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = wiremsg.Unmarshal(data)
	})
}

func FuzzUnpickle(f *testing.F) {
	for _, g := range wiremsgtest.Table() {
		f.Add(g.Code, g.Payload())
	}
	f.Fuzz(func(t *testing.T, code int8, payload []byte) {
		v, err := wiremsg.DecodePickledExt(code, payload)
		if err != nil {
			return
		}
		// What the reader accepts, the writer writes and the reader reads
		// back the same.
		ext, err := wiremsg.Pickle(v)
		if err != nil {
			return // e.g. an enum whose value is a tuple
		}
		again, err := wiremsg.DecodePickledExt(ext.Code, ext.Data)
		if err != nil || !equalValues(again, v) {
			t.Fatalf("%#v pickled as %x reads back as %#v, %v", v, ext.Data, again, err)
		}
	})
}

// A map keyed by a pickled enum whose value is a tuple (found by fuzzing
// create_kernels) is an error, not a panic.
func TestUnhashableMapKeyIsAnError(t *testing.T) {
	pickle := wiremsgtest.TupleValuedEnum()
	msg := append([]byte{0x81, 0xc7, byte(len(pickle)), byte(wiremsg.ExtEnum)}, pickle...)
	msg = append(msg, 0xc0)
	if _, err := wiremsg.Unmarshal(msg); err == nil || !strings.Contains(err.Error(), "unhashable map key") {
		t.Fatalf("got %v, want an unhashable map key error", err)
	}
}
