package wiremsg

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// Golden pickles of spec §2 (protocol 5).
var goldenPickles = []struct {
	description string
	ext         int8
	hex         string
	want        any
}{
	{"ClusterMode.SINGLE_NODE by value", ExtEnum, "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b73696e676c652d6e6f646594859452942e",
		Enum{Module: "ai.backend.common.types", Class: "ClusterMode", Value: "single-node", Name: "SINGLE_NODE"}},
	{"SessionTypes.INTERACTIVE", ExtEnum, "8005953e000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c53657373696f6e54797065739493948c0b696e74657261637469766594859452942e",
		Enum{Module: "ai.backend.common.types", Class: "SessionTypes", Value: "interactive", Name: "INTERACTIVE"}},
	{"AutoPullBehavior.DIGEST", ExtEnum, "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c104175746f50756c6c4265686176696f729493948c0664696765737494859452942e",
		Enum{Module: "ai.backend.common.types", Class: "AutoPullBehavior", Value: "digest", Name: "DIGEST"}},
	{"Decimal('1.5')", ExtDecimal, "80059521000000000000008c07646563696d616c948c07446563696d616c9493948c03312e3594859452942e",
		decimal.RequireFromString("1.5")},
	{"ImageRef", ExtImageRef, "800595a0000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c04332e3131948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948975622e",
		ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64"}},
	{"ResourceSlot", ExtResourceSlot, "8005957e000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94288c03637075948c07646563696d616c948c07446563696d616c9493948c013294859452948c036d656d94680a8c0a34323934393637323936948594529475738694622e",
		ResourceSlot{"cpu": decimal.RequireFromString("2"), "mem": decimal.RequireFromString("4294967296")}},
	{"SlotName('cuda.device')", ExtSlotName, "8005958a000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c08536c6f744e616d659493948c0b637564612e64657669636594859481947d948c0464617461946803737d94288c0c5f6465766963655f6e616d65948c00948c0b5f6d616a6f725f7479706594680a8c0b5f6d696e6f725f7479706594680a8c075f7061727365649489758694622e",
		SlotName("cuda.device")},
	{"BinarySize(1073741824)", ExtBinarySize, "80059533000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493944a00000040859481942e",
		BinarySize(1073741824)},
	{"ClusterMode.SINGLE_NODE by name (CPython 3.11)", ExtEnum, "80059554000000000000008c086275696c74696e73948c07676574617474729493948c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b53494e474c455f4e4f444594869452942e",
		Enum{Module: "ai.backend.common.types", Class: "ClusterMode", Value: "single-node", Name: "SINGLE_NODE"}},
}

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

func equalValues(a, b any) bool {
	if da, ok := a.(decimal.Decimal); ok {
		db, ok := b.(decimal.Decimal)
		return ok && da.Equal(db)
	}
	if ra, ok := a.(ResourceSlot); ok {
		rb, ok := b.(ResourceSlot)
		if !ok || len(ra) != len(rb) {
			return false
		}
		for k, v := range ra {
			if !v.Equal(rb[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestGoldenPickles(t *testing.T) {
	for _, tc := range goldenPickles {
		payload, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(extFrame(tc.ext, payload))
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		if !equalValues(got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, got, tc.want)
		}
		// Truncations must fail cleanly, never panic or succeed.
		for cut := 0; cut < len(payload); cut++ {
			if _, err := Unmarshal(extFrame(tc.ext, payload[:cut])); err == nil {
				t.Errorf("%s: truncated to %d bytes was accepted", tc.description, cut)
			}
		}
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
		{description: "uuid", data: append([]byte{0xd8, 1}, uuidBytes...), want: UUID(uuidBytes)},
		{description: "uuid of 15 bytes", data: extFrame(1, uuidBytes[:15]), wantErr: true},
		{description: "posix path", data: extFrame(4, []byte("/home/work")), want: PosixPath("/home/work")},
		{description: "pure posix path", data: extFrame(5, []byte("a/b")), want: PurePosixPath("a/b")},
		{description: "auto directory path", data: extFrame(17, []byte("/x")), want: AutoDirectoryPath("/x")},
		// temporenc DTSZ with microseconds: 2024-02-29 13:14:15.123456 UTC.
		{description: "datetime DTSZ us", data: extFrame(2, temporencDTSZMicro(2024, 2, 29, 13, 14, 15, 123456, 64)),
			want: time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)},
		{description: "datetime with +09:00", data: extFrame(2, temporencDTSZMicro(2024, 1, 1, 0, 0, 0, 0, 64+36)),
			want: time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", 9*3600))},
		{description: "unknown ext", data: extFrame(42, []byte("x")), wantErr: true},
		{description: "map with uuid key", data: append(append([]byte{0x81, 0xd8, 1}, uuidBytes...), 0xa1, 'v'), want: Map{UUID(uuidBytes): "v"}},
		{description: "bin stays bytes and str stays string", data: []byte{0x92, 0xc4, 1, 'a', 0xa1, 'a'}, want: []any{[]byte("a"), "a"}},
		{description: "trailing bytes", data: []byte{0xc0, 0xc0}, wantErr: true},
		{description: "array longer than input", data: []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, wantErr: true},
	}
	for _, tc := range cases {
		got, err := Unmarshal(tc.data)
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

func TestMarshalRoundTrip(t *testing.T) {
	uuid, _ := ParseUUID("12345678-1234-5678-1234-567812345678")
	cases := []struct {
		description string
		in          any
		want        any
	}{
		{"nested map", map[string]any{"a": []any{int64(1), "x", nil, true}, "b": 2.5}, Map{"a": []any{int64(1), "x", nil, true}, "b": 2.5}},
		{"uuid ext", uuid, uuid},
		{"bytes stay bin", []byte("raw"), []byte("raw")},
		{"string slice", []string{"a"}, []any{"a"}},
		{"large negative", int64(-1 << 40), int64(-1 << 40)},
	}
	for _, tc := range cases {
		b, err := Marshal(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		got, err := Unmarshal(b)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tc.description, got, err, tc.want)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, g := range goldenPickles {
		payload, _ := hex.DecodeString(g.hex)
		f.Add(extFrame(g.ext, payload))
	}
	f.Add([]byte("\x82\xa4args\x91\xa4ping\xa6kwargs\x80"))
	f.Add(extFrame(2, temporencDTSZMicro(2024, 2, 29, 13, 14, 15, 1, 64)))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Unmarshal(data)
	})
}

func FuzzUnpickle(f *testing.F) {
	for _, g := range goldenPickles {
		payload, _ := hex.DecodeString(g.hex)
		f.Add(int8(g.ext), payload)
	}
	f.Fuzz(func(t *testing.T, code int8, payload []byte) {
		if _, err := decodePickledExt(code, payload); err != nil {
			return
		}
	})
}

// A map keyed by a pickled enum whose value is a tuple (found by fuzzing
// create_kernels) is an error, not a panic.
func TestUnhashableMapKeyIsAnError(t *testing.T) {
	pickle := []byte("\x80\x05\x95\x3f\x00\x00\x00\x00\x00\x00\x00" +
		"\x8c\x17ai.backend.common.types\x94\x8c\x0bClusterMode\x94\x93\x94" +
		"\x8c\x0bsingle-node\x94\x85\x94\x85\x94\x52\x94\x2e")
	msg := append([]byte{0x81, 0xc7, byte(len(pickle)), byte(ExtEnum)}, pickle...)
	msg = append(msg, 0xc0)
	if _, err := Unmarshal(msg); err == nil || !strings.Contains(err.Error(), "unhashable map key") {
		t.Fatalf("got %v, want an unhashable map key error", err)
	}
}
