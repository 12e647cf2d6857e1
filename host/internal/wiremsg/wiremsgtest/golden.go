// Package wiremsgtest holds the one table of golden byte strings, made by
// CPython, that the codec (wiremsg) is checked against in both directions
// and that other packages' tests send or look for on the wire.
package wiremsgtest

import (
	"encoding/hex"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Golden is one pickle as CPython writes it (pickle.dumps(value,
// protocol=5)) inside the ext type packb gives it.
type Golden struct {
	Name  string // what it is, and where the bytes come from
	Code  int8   // the ext type
	Hex   string // the pickle
	Value any    // what wiremsg decodes it to, and encodes to these bytes
	// DecodeOnly marks a form the agent reads but never writes (CPython
	// 3.11's enum by name: the agent writes members by value).
	DecodeOnly bool
}

// Payload is the pickle's bytes.
func (g Golden) Payload() []byte {
	b, err := hex.DecodeString(g.Hex)
	if err != nil {
		panic("wiremsgtest: bad hex in " + g.Name) // the table is fixed; a typo is a bug here
	}
	return b
}

// Msgpack is the ext value as packb frames it (ext 8 or 16: no golden is
// of a fixext size).
func (g Golden) Msgpack() []byte {
	p := g.Payload()
	n := len(p)
	if n <= 0xff {
		return append([]byte{0xc7, byte(n), byte(g.Code)}, p...)
	}
	return append([]byte{0xc8, byte(n >> 8), byte(n), byte(g.Code)}, p...)
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// Spec §2's golden pickles (spec/backendai-wire.md).
var (
	ClusterModeSingle = Golden{Name: "spec: ClusterMode.SINGLE_NODE by value", Code: wiremsg.ExtEnum,
		Hex:   "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b73696e676c652d6e6f646594859452942e",
		Value: wiremsg.Enum{Module: "ai.backend.common.types", Class: "ClusterMode", Value: "single-node", Name: "SINGLE_NODE"}}
	ClusterModeByName = Golden{Name: "spec: ClusterMode.SINGLE_NODE by name (CPython 3.11)", Code: wiremsg.ExtEnum,
		Hex:        "80059554000000000000008c086275696c74696e73948c07676574617474729493948c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b53494e474c455f4e4f444594869452942e",
		Value:      wiremsg.Enum{Module: "ai.backend.common.types", Class: "ClusterMode", Value: "single-node", Name: "SINGLE_NODE"},
		DecodeOnly: true}
	SessionInteractive = Golden{Name: "spec: SessionTypes.INTERACTIVE", Code: wiremsg.ExtEnum,
		Hex:   "8005953e000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c53657373696f6e54797065739493948c0b696e74657261637469766594859452942e",
		Value: wiremsg.Enum{Module: "ai.backend.common.types", Class: "SessionTypes", Value: "interactive", Name: "INTERACTIVE"}}
	AutoPullDigest = Golden{Name: "spec: AutoPullBehavior.DIGEST", Code: wiremsg.ExtEnum,
		Hex:   "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c104175746f50756c6c4265686176696f729493948c0664696765737494859452942e",
		Value: wiremsg.Enum{Module: "ai.backend.common.types", Class: "AutoPullBehavior", Value: "digest", Name: "DIGEST"}}
	Decimal15 = Golden{Name: "spec: Decimal('1.5')", Code: wiremsg.ExtDecimal,
		Hex:   "80059521000000000000008c07646563696d616c948c07446563696d616c9493948c03312e3594859452942e",
		Value: dec("1.5")}
	ImageRef = Golden{Name: "spec: ImageRef cr.backend.ai/stable/python:3.11", Code: wiremsg.ExtImageRef,
		Hex:   "800595a0000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c04332e3131948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948975622e",
		Value: wiremsg.ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64"}}
	ResourceSlot = Golden{Name: "spec: ResourceSlot({'cpu': Decimal('2'), 'mem': Decimal('4294967296')})", Code: wiremsg.ExtResourceSlot,
		Hex:   "8005957e000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94288c03637075948c07646563696d616c948c07446563696d616c9493948c013294859452948c036d656d94680a8c0a34323934393637323936948594529475738694622e",
		Value: wiremsg.ResourceSlot{{Name: "cpu", Amount: dec("2")}, {Name: "mem", Amount: dec("4294967296")}}}
	SlotName = Golden{Name: "spec: SlotName('cuda.device'), the empty string memoized once", Code: wiremsg.ExtSlotName,
		Hex:   "8005958a000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c08536c6f744e616d659493948c0b637564612e64657669636594859481947d948c0464617461946803737d94288c0c5f6465766963655f6e616d65948c00948c0b5f6d616a6f725f7479706594680a8c0b5f6d696e6f725f7479706594680a8c075f7061727365649489758694622e",
		Value: wiremsg.SlotName("cuda.device")}
	BinarySize1GiB = Golden{Name: "spec: BinarySize(1073741824)", Code: wiremsg.ExtBinarySize,
		Hex:   "80059533000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493944a00000040859481942e",
		Value: wiremsg.BinarySize(1073741824)}
)

// Table is every golden: spec §2's, then ones written by CPython 3.13.0
// and 3.11.7 (pickle.dumps(obj, protocol=5)) with stand-in classes of the
// same shapes under the upstream module paths.
func Table() []Golden {
	return []Golden{
		ClusterModeSingle, ClusterModeByName, SessionInteractive, AutoPullDigest, Decimal15,
		ImageRef, ResourceSlot, SlotName, BinarySize1GiB,
		{Name: "CPython 3.13: four slots, equal amounts are separate strings, Decimal class fetched from memo", Code: wiremsg.ExtResourceSlot,
			Hex:   "800595a7000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94288c03637075948c07646563696d616c948c07446563696d616c9493948c013094859452948c036d656d94680a8c013094859452948c0b637564612e73686172657394680a8c03302e3594859452948c0b637564612e64657669636594680a8c0131948594529475738694622e",
			Value: wiremsg.ResourceSlot{{Name: "cpu", Amount: dec("0")}, {Name: "mem", Amount: dec("0")}, {Name: "cuda.shares", Amount: dec("0.5")}, {Name: "cuda.device", Amount: dec("1")}}},
		{Name: "CPython 3.13: one slot uses SETITEM without MARK", Code: wiremsg.ExtResourceSlot,
			Hex:   "80059567000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d948c03637075948c07646563696d616c948c07446563696d616c9493948c04312e3235948594529473738694622e",
			Value: wiremsg.ResourceSlot{{Name: "cpu", Amount: dec("1.25")}}},
		{Name: "CPython 3.13: empty ResourceSlot", Code: wiremsg.ExtResourceSlot,
			Hex:   "8005953f000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0c5265736f75726365536c6f749493942981944e7d948c0464617461947d94738694622e",
			Value: wiremsg.ResourceSlot{}},
		{Name: "CPython 3.13: negative Decimal", Code: wiremsg.ExtDecimal,
			Hex:   "80059524000000000000008c07646563696d616c948c07446563696d616c9493948c062d302e30303194859452942e",
			Value: dec("-0.001")},
		{Name: "CPython 3.13: a 300-digit Decimal uses BINUNICODE", Code: wiremsg.ExtDecimal,
			Hex:   "8005954d010000000000008c07646563696d616c948c07446563696d616c949394582c010000" + hex.EncodeToString([]byte(strings.Repeat("1", 300))) + "94859452942e",
			Value: dec(strings.Repeat("1", 300))},
		{Name: "CPython 3.13: SlotTypes.BYTES", Code: wiremsg.ExtEnum,
			Hex:   "80059535000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c09536c6f7454797065739493948c05627974657394859452942e",
			Value: wiremsg.SlotTypes("bytes")},
		{Name: "CPython 3.13: KernelLifecycleEventReason.USER_REQUESTED", Code: wiremsg.ExtEnum,
			Hex:   "80059569000000000000008c3161692e6261636b656e642e636f6d6d6f6e2e6576656e74732e6576656e745f74797065732e6b65726e656c2e7479706573948c1a4b65726e656c4c6966656379636c654576656e74526561736f6e9493948c0e757365722d72657175657374656494859452942e",
			Value: wiremsg.KernelLifecycleEventReason("user-requested")},
		{Name: "CPython 3.13: local ImageRef uses NEWTRUE", Code: wiremsg.ExtImageRef,
			Hex:   "800595a0000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c04332e3131948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948875622e",
			Value: wiremsg.ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64", IsLocal: true}},
		{Name: "CPython 3.11: BinarySize(0) uses BININT1", Code: wiremsg.ExtBinarySize,
			Hex:   "80059530000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493944b00859481942e",
			Value: wiremsg.BinarySize(0)},
		{Name: "CPython 3.11: BinarySize(300) uses BININT2", Code: wiremsg.ExtBinarySize,
			Hex:   "80059531000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493944d2c01859481942e",
			Value: wiremsg.BinarySize(300)},
		{Name: "CPython 3.11: BinarySize(4294967296) uses LONG1", Code: wiremsg.ExtBinarySize,
			Hex:   "80059535000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a050000000001859481942e",
			Value: wiremsg.BinarySize(4294967296)},
		{Name: "CPython 3.11: BinarySize(-5) uses BININT", Code: wiremsg.ExtBinarySize,
			Hex:   "80059533000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493944afbffffff859481942e",
			Value: wiremsg.BinarySize(-5)},
		{Name: "CPython 3.11: BinarySize(-4294967296) uses LONG1 with a sign byte", Code: wiremsg.ExtBinarySize,
			Hex:   "80059535000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a0500000000ff859481942e",
			Value: wiremsg.BinarySize(-4294967296)},
		{Name: "CPython 3.11: BinarySize(-2**63) drops the redundant sign byte", Code: wiremsg.ExtBinarySize,
			Hex:   "80059538000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a080000000000000080859481942e",
			Value: wiremsg.BinarySize(-9223372036854775808)},
		{Name: "CPython 3.11: BinarySize(2**63-1) uses LONG1", Code: wiremsg.ExtBinarySize,
			Hex:   "80059538000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a08ffffffffffffff7f859481942e",
			Value: wiremsg.BinarySize(9223372036854775807)},
		{Name: "CPython 3.11: BinarySize(-2**31-1) uses LONG1", Code: wiremsg.ExtBinarySize,
			Hex:   "80059535000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a05ffffff7fff859481942e",
			Value: wiremsg.BinarySize(-2147483649)},
		{Name: "CPython 3.11: BinarySize(2**39) keeps a zero byte for the sign", Code: wiremsg.ExtBinarySize,
			Hex:   "80059536000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0a42696e61727953697a659493948a06000000008000859481942e",
			Value: wiremsg.BinarySize(549755813888)},
	}
}

// TupleValuedEnum is a hostile pickle, hand-made: ClusterMode(("single-node",)),
// an enum member whose value is a tuple, which no sender makes but which
// decodes to a value Go cannot use as a map key (found by fuzzing
// create_kernels).
func TupleValuedEnum() []byte {
	return []byte("\x80\x05\x95\x3f\x00\x00\x00\x00\x00\x00\x00" +
		"\x8c\x17ai.backend.common.types\x94\x8c\x0bClusterMode\x94\x93\x94" +
		"\x8c\x0bsingle-node\x94\x85\x94\x85\x94\x52\x94\x2e")
}
