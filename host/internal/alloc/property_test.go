package alloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

// randomSource hands out bounded choices from a PRNG or from fuzz bytes.
type randomSource interface {
	intn(n int) int
}

type prng struct{ r *rand.Rand }

func (p prng) intn(n int) int { return p.r.IntN(n) }

// byteSource reads choices from fuzz input; exhausted input reads as zero.
type byteSource struct {
	data []byte
	pos  int
}

func (b *byteSource) intn(n int) int {
	if b.pos+1 >= len(b.data) {
		return 0
	}
	v := int(b.data[b.pos])<<8 | int(b.data[b.pos+1])
	b.pos += 2
	return v % n
}

func (b *byteSource) exhausted() bool { return b.pos+1 >= len(b.data) }

var propertyQuanta = []string{"0.01", "0.1", "0.25", "0.00001", "1"}

// randomSpecs builds cpu, mem and cuda maps of random shapes.
func randomSpecs(src randomSource) []MapSpec {
	nodes := 1 + src.intn(3)
	cores := 1 + src.intn(12)
	cpu := MapSpec{Kind: "cpu", Strategy: Strategy(src.intn(2))}
	for c := range cores {
		cpu.Devices = append(cpu.Devices, Device{ID: fmt.Sprint(c), Slot: "cpu", Capacity: decimal.NewFromInt(int64(1 + src.intn(2))), NUMANode: c % nodes})
	}
	mem := MapSpec{Kind: "mem", Strategy: Fill, Devices: []Device{{ID: "root", Slot: "mem", SlotKind: SlotBytes,
		Capacity: decimal.NewFromInt(int64(1024 * (1 + src.intn(8)))), NUMANode: 0}}}
	cuda := MapSpec{Kind: "cuda", Type: MapType(src.intn(2)), Strategy: Strategy(src.intn(2)),
		Quantum: dec(propertyQuanta[src.intn(len(propertyQuanta))]), DenyFragmentation: src.intn(2) == 0,
		MinMemory: decimal.New(int64(src.intn(30)), -2)}
	slot := "cuda.device"
	if cuda.Type == Fractional {
		slot = "cuda.shares"
	}
	for g := range 1 + src.intn(6) {
		// Capacities at two decimals, multiples of the quantum.
		capacity := decimal.NewFromInt(int64(1 + src.intn(4)))
		if cuda.Type == Fractional {
			capacity = roundDown(decimal.New(int64(25+src.intn(300)), -2), cuda.Quantum)
		}
		cuda.Devices = append(cuda.Devices, Device{ID: fmt.Sprintf("gpu%d", g), Slot: slot, Capacity: capacity, NUMANode: g % nodes})
	}
	return []MapSpec{cpu, mem, cuda}
}

func randomRequest(src randomSource, a *Allocator) Slots {
	req := Slots{}
	for _, m := range a.maps {
		for _, s := range m.slots {
			if src.intn(4) == 0 {
				continue // leave the slot out
			}
			// Up to about half the slot, with up to three decimals.
			limit := s.capacity.Shift(3).IntPart()/2 + 1
			req[s.name] = decimal.New(int64(src.intn(int(min(limit, 1<<20)))), -3)
			if s.name == "mem" {
				req[s.name] = req[s.name].Truncate(0)
			}
		}
	}
	return req
}

// ledger tracks what the live allocations add up to per device.
type ledger map[string]map[string]decimal.Decimal // kind -> device ID -> amount

func (l ledger) add(alloc Allocation, sign int) {
	for kind, da := range alloc {
		for _, per := range da {
			for id, v := range per {
				if l[kind] == nil {
					l[kind] = map[string]decimal.Decimal{}
				}
				if sign < 0 {
					v = v.Neg()
				}
				l[kind][id] = l[kind][id].Add(v)
			}
		}
	}
}

// checkInvariants: every device within [0, capacity], and exactly equal to
// the sum of the live allocations on it.
func checkInvariants(t testing.TB, a *Allocator, l ledger, step string) {
	t.Helper()
	for _, u := range a.Snapshot() {
		for _, d := range u.Devices {
			if d.Allocated.Sign() < 0 || d.Allocated.GreaterThan(d.Capacity) {
				t.Fatalf("%s: %s/%s allocated %s of %s", step, u.Slot, d.ID, d.Allocated, d.Capacity)
			}
			if want := l[u.DeviceKind][d.ID]; !d.Allocated.Equal(want) {
				t.Fatalf("%s: %s/%s allocated %s, live allocations sum to %s", step, u.Slot, d.ID, d.Allocated, want)
			}
		}
	}
}

// exercise runs a random allocate/free sequence and then frees everything.
// It returns how many allocations succeeded and failed.
func exercise(t testing.TB, src randomSource, steps int, done func() bool) (succeeded, failed int) {
	specs := randomSpecs(src)
	a, err := NewAllocator(Config{AffinityPolicy: affinity.Policy(src.intn(2))}, specs)
	if err != nil {
		t.Fatalf("NewAllocator: %v", err)
	}
	l := ledger{}
	var live []Allocation
	for step := 0; step < steps && !done(); step++ {
		if len(live) > 0 && src.intn(3) == 0 {
			k := src.intn(len(live))
			if err := a.Free(live[k]); err != nil {
				t.Fatalf("step %d: free %v: %v", step, live[k], err)
			}
			l.add(live[k], -1)
			live = append(live[:k], live[k+1:]...)
		} else {
			req := randomRequest(src, a)
			res, err := a.Allocate(req)
			if err != nil {
				if !errors.Is(err, ErrResource) {
					t.Fatalf("step %d: allocate %v: unexpected error kind: %v", step, req, err)
				}
				failed++
			} else {
				succeeded++
				l.add(res, +1)
				live = append(live, res)
			}
		}
		checkInvariants(t, a, l, fmt.Sprintf("step %d", step))
	}
	for _, res := range live {
		if err := a.Free(res); err != nil {
			t.Fatalf("final free: %v", err)
		}
	}
	for _, u := range a.Snapshot() {
		for _, d := range u.Devices {
			if !d.Allocated.IsZero() {
				t.Fatalf("after freeing everything %s/%s holds %s", u.Slot, d.ID, d.Allocated)
			}
		}
	}
	// Rebuilding from nothing must also give zero; from everything, the
	// same state as incremental allocation was checked in TestRebuildApplyFree.
	if err := a.Rebuild(nil); err != nil {
		t.Fatal(err)
	}
	return succeeded, failed
}

// TestPropertyAllocateFree: random maps and random allocate/free sequences
// never exceed a capacity, never go below zero, always match the ledger of
// live allocations, and return to exactly zero.
func TestPropertyAllocateFree(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 30
	}
	var succeeded, failed int
	for seed := range runs {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			s, f := exercise(t, prng{rand.New(rand.NewPCG(uint64(seed), 0xa110c))}, 60, func() bool { return false })
			succeeded += s
			failed += f
		})
	}
	t.Logf("%d allocations succeeded, %d were refused", succeeded, failed)
	// Both paths must be exercised for the property to mean anything.
	if succeeded < runs*5 || failed < runs {
		t.Errorf("too one-sided: %d succeeded, %d refused", succeeded, failed)
	}
}

// FuzzAllocateFree drives the same property from fuzz input:
// go test -fuzz FuzzAllocateFree ./internal/alloc/
func FuzzAllocateFree(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("the quick brown fox jumps over the lazy dog, twice over: the quick brown fox"))
	seed := rand.New(rand.NewPCG(1, 2))
	for range 4 {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(seed.IntN(256))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &byteSource{data: data}
		exercise(t, src, 200, src.exhausted)
	})
}
