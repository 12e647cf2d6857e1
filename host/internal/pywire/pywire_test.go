package pywire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// Golden pickles: the first ones are spec §2's; the others were written by
// CPython 3.13.0 (pickle.dumps(obj, protocol=5)) with stand-in classes of the
// same shapes under the upstream module paths.
var goldenPickles = []struct {
	description string
	pickle      func() []byte
	hex         string
}{
	{
		description: "spec golden ResourceSlot({'cpu': Decimal('2'), 'mem': Decimal('4294967296')})",
		pickle: func() []byte {
			return PickleResourceSlot(ResourceSlot{{"cpu", dec("2")}, {"mem", dec("4294967296")}})
		},
		hex: "8005957e000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94288c03637075948c07646563696d616c948c07446563696d616c9493948c013294859452948c036d656d94680a8c0a34323934393637323936948594529475738694622e",
	},
	{
		description: "spec golden Decimal('1.5')",
		pickle:      func() []byte { return PickleDecimal(dec("1.5")) },
		hex:         "80059521000000000000008c07646563696d616c948c07446563696d616c9493948c03312e3594859452942e",
	},
	{
		description: "spec golden ClusterMode.SINGLE_NODE by value",
		pickle: func() []byte {
			return PickleEnum(Enum{Module: "ai.backend.common.types", Class: "ClusterMode", Value: "single-node"})
		},
		hex: "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b73696e676c652d6e6f646594859452942e",
	},
	{
		description: "spec golden ImageRef python:3.11",
		pickle: func() []byte {
			return PickleImageRef(ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64"})
		},
		hex: "800595a0000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c04332e3131948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948975622e",
	},
	{
		description: "spec golden SlotName('cuda.device'), empty string memoized once",
		pickle:      func() []byte { return PickleSlotName("cuda.device") },
		hex:         "8005958a000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c08536c6f744e616d659493948c0b637564612e64657669636594859481947d948c0464617461946803737d94288c0c5f6465766963655f6e616d65948c00948c0b5f6d616a6f725f7479706594680a8c0b5f6d696e6f725f7479706594680a8c075f7061727365649489758694622e",
	},
	{
		description: "CPython 3.13: four slots, equal amounts are separate strings, Decimal class fetched from memo",
		pickle: func() []byte {
			return PickleResourceSlot(ResourceSlot{{"cpu", dec("0")}, {"mem", dec("0")}, {"cuda.shares", dec("0.5")}, {"cuda.device", dec("1")}})
		},
		hex: "800595a7000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94288c03637075948c07646563696d616c948c07446563696d616c9493948c013094859452948c036d656d94680a8c013094859452948c0b637564612e73686172657394680a8c03302e3594859452948c0b637564612e64657669636594680a8c0131948594529475738694622e",
	},
	{
		description: "CPython 3.13: one slot uses SETITEM without MARK",
		pickle:      func() []byte { return PickleResourceSlot(ResourceSlot{{"cpu", dec("1.25")}}) },
		hex:         "80059567000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d948c03637075948c07646563696d616c948c07446563696d616c9493948c04312e3235948594529473738694622e",
	},
	{
		description: "CPython 3.13: empty ResourceSlot",
		pickle:      func() []byte { return PickleResourceSlot(nil) },
		hex:         "8005953f000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94738694622e",
	},
	{
		description: "CPython 3.13: negative Decimal",
		pickle:      func() []byte { return PickleDecimal(dec("-0.001")) },
		hex:         "80059524000000000000008c07646563696d616c948c07446563696d616c9493948c062d302e30303194859452942e",
	},
	{
		description: "CPython 3.13: SlotTypes.BYTES",
		pickle:      func() []byte { return PickleEnum(SlotTypes("bytes")) },
		hex:         "80059535000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c09536c6f7454797065739493948c05627974657394859452942e",
	},
	{
		description: "CPython 3.13: KernelLifecycleEventReason.USER_REQUESTED",
		pickle:      func() []byte { return PickleEnum(KernelLifecycleEventReason("user-requested")) },
		hex:         "80059569000000000000008c3161692e6261636b656e642e636f6d6d6f6e2e6576656e74732e6576656e745f74797065732e6b65726e656c2e7479706573948c1a4b65726e656c4c6966656379636c654576656e74526561736f6e9493948c0e757365722d72657175657374656494859452942e",
	},
	{
		description: "CPython 3.13: local ImageRef uses NEWTRUE",
		pickle: func() []byte {
			return PickleImageRef(ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64", IsLocal: true})
		},
		hex: "800595a0000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c04332e3131948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948875622e",
	},
	{
		description: "CPython 3.13: a 300-digit Decimal uses BINUNICODE",
		pickle:      func() []byte { return PickleDecimal(dec(strings.Repeat("1", 300))) },
		hex:         "8005954d010000000000008c07646563696d616c948c07446563696d616c949394582c010000" + hex.EncodeToString([]byte(strings.Repeat("1", 300))) + "94859452942e",
	},
}

func TestPicklesMatchCPython(t *testing.T) {
	for _, tc := range goldenPickles {
		t.Run(tc.description, func(t *testing.T) {
			want, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.pickle(); !bytes.Equal(got, want) {
				t.Errorf("pickle differs\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestMarshalDecodesAsTheManagerWould checks the msgpack bytes by decoding
// them with wiremsg, the agent's own reader of the manager's msgpack.
func TestMarshalDecodesAsTheManagerWould(t *testing.T) {
	cases := []struct {
		description string
		value       any
		want        any
	}{
		{"tuple of str, int, nil", Tuple{"k", int64(-1), nil}, []any{"k", int64(-1), nil}},
		{"large and negative ints", Tuple{int64(1) << 40, int64(-200), uint64(300)}, []any{int64(1) << 40, int64(-200), int64(300)}},
		{"bytes stay bin", []byte{1, 2, 3}, []byte{1, 2, 3}},
		{"float64", 1.5, 1.5},
		{"decimal as ext 3", dec("12.5"), dec("12.5")},
		{"enum as ext 6", SlotTypes("count"), wiremsg.Enum{Module: "ai.backend.common.types", Class: "SlotTypes", Value: "count"}},
		{"resource slot as ext 8", ResourceSlot{{"cpu", dec("4")}}, wiremsg.ResourceSlot{"cpu": dec("4")}},
		{"slot name as ext 9", SlotName("cuda.shares"), wiremsg.SlotName("cuda.shares")},
		{"image ref as ext 7", ImageRef{Name: "n", Tag: "t", Registry: "r"}, wiremsg.ImageRef{Name: "n", Tag: "t", Registry: "r"}},
		{"ordered map", Map{{"b", true}, {"a", false}}, wiremsg.Map{"b": true, "a": false}},
		{"long string and array", Tuple{strings.Repeat("x", 40000), make([]any, 20)}, []any{strings.Repeat("x", 40000), make([]any, 20)}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			b, err := Marshal(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wiremsg.Unmarshal(b)
			if err != nil {
				t.Fatalf("unmarshal %x: %v", b, err)
			}
			if !equalDecoded(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// equalDecoded compares decoded values, with decimals compared by value.
func equalDecoded(got, want any) bool {
	gb, err1 := json.Marshal(normalize(got))
	wb, err2 := json.Marshal(normalize(want))
	return err1 == nil && err2 == nil && bytes.Equal(gb, wb)
}

func normalize(v any) any {
	switch x := v.(type) {
	case wiremsg.Map:
		m := map[string]any{}
		for k, item := range x {
			m[k.(string)] = normalize(item)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case decimal.Decimal:
		return "decimal:" + x.String()
	case wiremsg.ResourceSlot:
		m := map[string]any{}
		for k, d := range x {
			m[k] = "decimal:" + d.String()
		}
		return m
	}
	return v
}

func TestMarshalRejectsUnknownTypes(t *testing.T) {
	if _, err := Marshal(Tuple{struct{}{}}); err == nil {
		t.Fatal("want an error for a struct")
	}
}

func TestMapMarshalJSONKeepsOrder(t *testing.T) {
	b, err := json.Marshal(Map{{"z", dec("1.50")}, {"a", SlotTypes("bytes")}, {SlotName("cuda.device"), Tuple{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":"1.5","a":"bytes","cuda.device":[1]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
