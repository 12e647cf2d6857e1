package accounting

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

const gib = int64(1) << 30

func total(slot string, typ alloc.MapType, amount string) alloc.SlotTotal {
	return alloc.SlotTotal{Slot: slot, DeviceKind: alloc.DeviceKindOf(slot), MapType: typ, Total: dec(amount)}
}

func agents(n int, manual *ManualAllocation) []Agent {
	out := make([]Agent, n)
	for i := range out {
		out[i] = Agent{ID: "agent" + string(rune('1'+i)), Manual: manual}
	}
	return out
}

// TestSplitFixtures is fixture 21 (test_resource_allocation.py): reserved
// slots per agent for the shared, auto-split and manual modes.
func TestSplitFixtures(t *testing.T) {
	noReservation := Reservation{}
	gibs := func(n int64) string { return decimal.NewFromInt(n * gib).String() }
	cases := []struct {
		description  string
		totals       []alloc.SlotTotal
		reservation  Reservation
		mode         Mode
		agents       []Agent
		wantReserved []map[string]string // per agent
		wantErr      error
	}{
		{"shared, 2 agents: everything for everyone, nothing reserved",
			[]alloc.SlotTotal{total("cpu", alloc.Fractional, "8"), total("cuda.shares", alloc.Fractional, "1.0")},
			noReservation, Shared, agents(2, nil),
			[]map[string]string{{"cpu": "0", "cuda.shares": "0"}, {"cpu": "0", "cuda.shares": "0"}}, nil},
		{"shared with reserved cpu 2 and mem 4G: reserved = the host reservation",
			[]alloc.SlotTotal{total("cpu", alloc.Fractional, "8"), total("mem", alloc.Fractional, gibs(16))},
			Reservation{CPU: dec("2"), Mem: decimal.NewFromInt(4 * gib)}, Shared, agents(1, nil),
			[]map[string]string{{"cpu": "2", "mem": gibs(4)}}, nil},
		{"auto-split fractional 1.0 over 2 -> 0.5 each",
			[]alloc.SlotTotal{total("cuda.shares", alloc.Fractional, "1.0")}, noReservation, AutoSplit, agents(2, nil),
			[]map[string]string{{"cuda.shares": "0.5"}, {"cuda.shares": "0.5"}}, nil},
		{"auto-split discrete 8 over 2 -> 4 each",
			[]alloc.SlotTotal{total("cuda", alloc.Discrete, "8")}, noReservation, AutoSplit, agents(2, nil),
			[]map[string]string{{"cuda": "4"}, {"cuda": "4"}}, nil},
		{"auto-split discrete 5 over 3 -> divmod gives 2/2/1, reserved 3/3/4",
			[]alloc.SlotTotal{total("cuda", alloc.Discrete, "5")}, noReservation, AutoSplit, agents(3, nil),
			[]map[string]string{{"cuda": "3"}, {"cuda": "3"}, {"cuda": "4"}}, nil},
		{"auto-split with reserved cpu 4: (16 - 4) / 2 = 6 each, reserved 10",
			[]alloc.SlotTotal{total("cpu", alloc.Fractional, "16")}, Reservation{CPU: dec("4")}, AutoSplit, agents(2, nil),
			[]map[string]string{{"cpu": "10"}, {"cpu": "10"}}, nil},
		{"auto-split mixed: discrete cpu 4 -> 2 each, fractional cuda.shares 1.0 -> 0.5 each",
			[]alloc.SlotTotal{total("cpu", alloc.Discrete, "4"), total("cuda.shares", alloc.Fractional, "1.0")}, noReservation, AutoSplit, agents(2, nil),
			[]map[string]string{{"cpu": "2", "cuda.shares": "0.5"}, {"cpu": "2", "cuda.shares": "0.5"}}, nil},
		{"auto-split 4 GPUs of 1.0 shares over 2 -> reserved 2",
			[]alloc.SlotTotal{total("cuda.shares", alloc.Fractional, "4.0")}, noReservation, AutoSplit, agents(2, nil),
			[]map[string]string{{"cuda.shares": "2"}, {"cuda.shares": "2"}}, nil},
		{"manual cpu 4, mem 8G on 16 cores / 32G for 2 agents: reserved 12 and 24G",
			[]alloc.SlotTotal{total("cpu", alloc.Fractional, "16"), total("mem", alloc.Fractional, gibs(32))}, noReservation, Manual,
			agents(2, &ManualAllocation{CPU: dec("4"), Mem: decimal.NewFromInt(8 * gib)}),
			[]map[string]string{{"cpu": "12", "mem": gibs(24)}, {"cpu": "12", "mem": gibs(24)}}, nil},
		{"manual with cuda.shares 0.5 -> reserved 0.5",
			[]alloc.SlotTotal{total("cpu", alloc.Fractional, "16"), total("mem", alloc.Fractional, gibs(32)), total("cuda.shares", alloc.Fractional, "1.0")},
			noReservation, Manual,
			agents(1, &ManualAllocation{CPU: dec("8"), Mem: decimal.NewFromInt(16 * gib), Devices: map[string]decimal.Decimal{"cuda.shares": dec("0.5")}}),
			[]map[string]string{{"cpu": "8", "mem": gibs(16), "cuda.shares": "0.5"}}, nil},
		{"manual over-allocation: 2 agents x 10 cores of 16",
			[]alloc.SlotTotal{total("cpu", alloc.Discrete, "16"), total("mem", alloc.Discrete, gibs(32))}, noReservation, Manual,
			agents(2, &ManualAllocation{CPU: dec("10"), Mem: decimal.NewFromInt(8 * gib)}), nil, ErrOverAllocated},
		{"manual without an entry for a device slot",
			[]alloc.SlotTotal{total("cpu", alloc.Discrete, "16"), total("mem", alloc.Discrete, gibs(32)), total("cuda.device", alloc.Discrete, "4")},
			noReservation, Manual, agents(1, &ManualAllocation{CPU: dec("1"), Mem: dec("1")}), nil, ErrInvalidConfig},
		{"reservation larger than the total",
			[]alloc.SlotTotal{total("cpu", alloc.Discrete, "1")}, Reservation{CPU: dec("2")}, Shared, agents(1, nil), nil, ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			parts, err := Split(tc.totals, tc.reservation, tc.mode, tc.agents)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.wantReserved {
				for slot, w := range want {
					if got := parts[i].Reserved[slot]; !got.Equal(dec(w)) {
						t.Errorf("agent %d reserved[%s] = %s, want %s", i, slot, got, w)
					}
				}
			}
		})
	}
}

func TestScalingFactor(t *testing.T) {
	parts, err := Split([]alloc.SlotTotal{total("cpu", alloc.Discrete, "9")}, Reservation{}, AutoSplit, agents(3, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := parts[0].ScalingFactor["cpu"]; got.String() != "0.3333333333333333333333333333" {
		t.Errorf("auto-split factor %s, want Python's 28-digit 1/3", got)
	}
	parts, err = Split([]alloc.SlotTotal{total("cpu", alloc.Discrete, "16"), total("mem", alloc.Discrete, "64")},
		Reservation{}, Manual, agents(1, &ManualAllocation{CPU: dec("4"), Mem: dec("32")}))
	if err != nil {
		t.Fatal(err)
	}
	if got := parts[0].ScalingFactor; !got["cpu"].Equal(dec("0.25")) || !got["mem"].Equal(dec("0.5")) {
		t.Errorf("manual factors %v", got)
	}
}

// TestAlignMemory checks upstream's test_align_memory invariants and the
// spec's example.
func TestAlignMemory(t *testing.T) {
	const align, reserved = 10, 1000
	for orig := int64(19950); orig < 20050; orig++ {
		usable, actual := AlignMemory(orig, reserved, align)
		if usable%align != 0 || usable+actual != orig || actual < 990 || actual > 1010 {
			t.Errorf("AlignMemory(%d) = %d, %d", orig, usable, actual)
		}
	}
	if usable, _ := AlignMemory(16*gib, gib, 16<<20); usable != 15*gib {
		t.Errorf("16 GiB with 1 GiB reserved -> %d, want 15 GiB", usable)
	}
}

func TestReportedSlots(t *testing.T) {
	cases := []struct {
		description string
		scanned     map[string]string
		reserved    map[string]string
		want        map[string]string
		wantErr     error
	}{
		{"mem aligned, cpu minus reserved, others clamped at zero",
			map[string]string{"cpu": "8", "mem": decimal.NewFromInt(16 * gib).String(), "cuda.device": "1"},
			map[string]string{"cpu": "1", "mem": decimal.NewFromInt(gib).String(), "cuda.device": "2"},
			map[string]string{"cpu": "7", "mem": decimal.NewFromInt(15 * gib).String(), "cuda.device": "0"}, nil},
		{"no cpu left", map[string]string{"cpu": "1", "mem": "1073741824"}, map[string]string{"cpu": "1"}, nil, ErrInitialization},
		{"no mem left", map[string]string{"cpu": "4", "mem": "1073741824"}, map[string]string{"mem": "1073741824"}, nil, ErrInitialization},
	}
	toSlots := func(m map[string]string) map[string]decimal.Decimal {
		out := map[string]decimal.Decimal{}
		for k, v := range m {
			out[k] = dec(v)
		}
		return out
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ReportedSlots(toSlots(tc.scanned), toSlots(tc.reserved), 16<<20)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			for slot, w := range tc.want {
				if !got[slot].Equal(dec(w)) {
					t.Errorf("%s = %s, want %s", slot, got[slot], w)
				}
			}
		})
	}
}

func TestDefaultsAndParsing(t *testing.T) {
	r := DefaultReservation()
	if !r.CPU.Equal(dec("1")) || r.Mem.IntPart() != gib || r.Disk.IntPart() != 8*gib {
		t.Errorf("default reservation %+v", r)
	}
	for in, want := range map[string]Mode{"shared": Shared, "auto-split": AutoSplit, "AUTO_SPLIT": AutoSplit, "manual": Manual} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("split"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseMode(split) error %v", err)
	}
}
