package alloc

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// uniformDevices makes devices a0, a1, ... of one slot with the given
// capacities.
func uniformDevices(prefix, slot string, kind SlotKind, capacities ...string) []Device {
	out := make([]Device, len(capacities))
	for i, c := range capacities {
		out[i] = Device{ID: fmt.Sprintf("%s%d", prefix, i), Slot: slot, SlotKind: kind, Capacity: dec(c), NUMANode: -1}
	}
	return out
}

func repeatString(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func mustMap(t testing.TB, spec MapSpec) *DeviceMap {
	t.Helper()
	m, err := NewDeviceMap(spec)
	if err != nil {
		t.Fatalf("NewDeviceMap: %v", err)
	}
	return m
}

func slotsOf(kv map[string]string) Slots {
	out := make(Slots, len(kv))
	for k, v := range kv {
		out[k] = dec(v)
	}
	return out
}

func deviceAllocOf(kv map[string]map[string]string) DeviceAllocation {
	out := make(DeviceAllocation, len(kv))
	for slot, per := range kv {
		out[slot] = make(map[string]decimal.Decimal, len(per))
		for id, v := range per {
			out[slot][id] = dec(v)
		}
	}
	return out
}

// allocatedOf reads one device's allocation.
func allocatedOf(t testing.TB, m *DeviceMap, id string) decimal.Decimal {
	t.Helper()
	i, ok := m.index[id]
	if !ok {
		t.Fatalf("no device %q", id)
	}
	return m.allocated[i]
}

// checkState compares the listed devices numerically; with othersZero set,
// every other device must hold exactly zero.
func checkState(t testing.TB, m *DeviceMap, want map[string]string, othersZero bool) {
	t.Helper()
	for id, w := range want {
		if got := allocatedOf(t, m, id); !got.Equal(dec(w)) {
			t.Errorf("device %s: allocated %s, want %s (state %s)", id, got, w, formatState(m))
		}
	}
	if othersZero {
		for i, d := range m.devices {
			if _, listed := want[d.ID]; !listed && !m.allocated[i].IsZero() {
				t.Errorf("device %s: allocated %s, want 0 (state %s)", d.ID, m.allocated[i], formatState(m))
			}
		}
	}
}

func formatState(m *DeviceMap) string {
	parts := make([]string, len(m.devices))
	for i, d := range m.devices {
		parts[i] = d.ID + "=" + m.allocated[i].String()
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func formatAlloc(da DeviceAllocation) string {
	var parts []string
	for slot, per := range da {
		for id, v := range per {
			parts = append(parts, slot+"/"+id+"="+v.String())
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

// checkResult compares a result numerically, entry by entry, zero entries
// included.
func checkResult(t testing.TB, got DeviceAllocation, want map[string]map[string]string) {
	t.Helper()
	w := deviceAllocOf(want)
	if !sameAllocation(got, w) {
		t.Errorf("result %s, want %s", formatAlloc(got), formatAlloc(w))
	}
}

func sameAllocation(a, b DeviceAllocation) bool {
	if len(a) != len(b) {
		return false
	}
	for slot, per := range a {
		other, ok := b[slot]
		if !ok || len(other) != len(per) {
			return false
		}
		for id, v := range per {
			if o, ok := other[id]; !ok || !o.Equal(v) {
				return false
			}
		}
	}
	return true
}

func checkErr(t testing.TB, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	}
}

func totalOf(da DeviceAllocation, slot string) decimal.Decimal {
	sum := decimal.Zero
	for _, v := range da[slot] {
		sum = sum.Add(v)
	}
	return sum
}

func usedDevices(da DeviceAllocation, slot string) int {
	n := 0
	for _, v := range da[slot] {
		if v.Sign() > 0 {
			n++
		}
	}
	return n
}

// setMinMemory changes min_memory between calls, as upstream's tests pass it
// per call.
func (m *DeviceMap) setMinMemory(x decimal.Decimal) {
	m.minMemory = x
	m.minMemoryQ = quantize2(x).Round(m.places)
}
