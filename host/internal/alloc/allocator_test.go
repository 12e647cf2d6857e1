package alloc

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/alloc/affinity"
)

func mustAllocator(t testing.TB, cfg Config, specs ...MapSpec) *Allocator {
	t.Helper()
	a, err := NewAllocator(cfg, specs)
	if err != nil {
		t.Fatalf("NewAllocator: %v", err)
	}
	return a
}

func cpuSpec(cores int, numa func(core int) int) MapSpec {
	devices := make([]Device, cores)
	for c := range devices {
		devices[c] = Device{ID: fmt.Sprint(c), Slot: "cpu", SlotKind: SlotCount, Capacity: dec("1"), NUMANode: numa(c)}
	}
	return MapSpec{Kind: "cpu", Devices: devices}
}

func memSpec(bytes string) MapSpec {
	return MapSpec{Kind: "mem", Strategy: Fill,
		Devices: []Device{{ID: "root", Slot: "mem", SlotKind: SlotBytes, Capacity: dec(bytes), NUMANode: 0}}}
}

func unknownNUMA(int) int { return -1 }

func deviceState(t testing.TB, a *Allocator, kind, id string) decimal.Decimal {
	t.Helper()
	return allocatedOf(t, a.byKind[kind], id)
}

// TestAllocateRollback is fixture 20's test_allocate_rollback: a failing mem
// allocation rolls back the cpu core taken in the same call.
func TestAllocateRollback(t *testing.T) {
	a := mustAllocator(t, Config{AllocationOrder: []string{"cpu", "mem"}, AffinityPolicy: affinity.PreferSingleNode},
		cpuSpec(2, unknownNUMA), memSpec("1024"))
	_, err := a.Allocate(Slots{"cpu": dec("1"), "mem": dec("512")})
	checkErr(t, err, nil)
	_, err = a.Allocate(Slots{"cpu": dec("1"), "mem": dec("1024")})
	checkErr(t, err, ErrInsufficientResource)
	var re *ResourceError
	if !errors.As(err, &re) || re.Slot != "mem" || re.DeviceKind != "mem" || !re.Requested.Equal(dec("1024")) ||
		!re.HasAllocatable || !re.Allocatable.Equal(dec("512")) {
		t.Errorf("error details %+v", re)
	}
	for _, c := range []struct{ kind, id, want string }{{"cpu", "0", "1"}, {"cpu", "1", "0"}, {"mem", "root", "512"}} {
		if got := deviceState(t, a, c.kind, c.id); !got.Equal(dec(c.want)) {
			t.Errorf("%s/%s = %s, want %s", c.kind, c.id, got, c.want)
		}
	}
}

// TestMockFractionalCUDA is fixture 20's
// test_allow_fractional_resource_fragmentation with the mock CUDA plugin:
// two B200s on NUMA 0 and 1, quantum 0.1.
func TestMockFractionalCUDA(t *testing.T) {
	cuda := MapSpec{Kind: "cuda", Type: Fractional, Quantum: dec("0.1"),
		ExclusiveSlots: []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"},
		Devices: []Device{
			{ID: "c59395cd-01", Slot: "cuda.shares", Capacity: dec("1.0"), NUMANode: 0},
			{ID: "c59395cd-02", Slot: "cuda.shares", Capacity: dec("1.0"), NUMANode: 1},
		}}
	a := mustAllocator(t, Config{AllocationOrder: []string{"cuda", "cpu", "mem"}, AffinityPolicy: affinity.PreferSingleNode},
		cuda, cpuSpec(4, unknownNUMA), memSpec("4096"))
	steps := []struct {
		description string
		shares      string
		deny        bool
		wantErr     error
		wantState   map[string]string // "kind/id" -> allocated
	}{
		{"0.8 -> the NUMA-1 device (lowest priority that fits)", "0.8", false, nil,
			map[string]string{"cuda/c59395cd-01": "0", "cuda/c59395cd-02": "0.8", "cpu/0": "1", "cpu/1": "0", "mem/root": "512"}},
		{"0.8 -> the other device", "0.8", false, nil,
			map[string]string{"cuda/c59395cd-01": "0.8", "cuda/c59395cd-02": "0.8", "cpu/1": "1", "mem/root": "1024"}},
		{"0.4 with the guard on -> fragmented, nothing changes", "0.4", true, ErrFragmented,
			map[string]string{"cuda/c59395cd-01": "0.8", "cuda/c59395cd-02": "0.8", "cpu/2": "0", "mem/root": "1024"}},
		{"0.4 with the guard off -> 0.2 + 0.2", "0.4", false, nil,
			map[string]string{"cuda/c59395cd-01": "1.0", "cuda/c59395cd-02": "1.0", "cpu/2": "1", "mem/root": "1536"}},
	}
	for _, st := range steps {
		a.byKind["cuda"].denyFragmentation = st.deny
		_, err := a.Allocate(Slots{"cpu": dec("1"), "mem": dec("512"), "cuda.shares": dec(st.shares)})
		checkErr(t, err, st.wantErr)
		for key, want := range st.wantState {
			kind, id, _ := strings.Cut(key, "/")
			if got := deviceState(t, a, kind, id); !got.Equal(dec(want)) {
				t.Errorf("%s: %s = %s, want %s", st.description, key, got, want)
			}
		}
	}
}

func TestAllocatorRequestValidation(t *testing.T) {
	newAllocator := func() *Allocator {
		return mustAllocator(t, Config{}, cpuSpec(4, unknownNUMA), memSpec("1000"),
			MapSpec{Kind: "cuda", ExclusiveSlots: []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"}, Devices: []Device{
				{ID: "0", Slot: "cuda.device", Capacity: dec("1"), NUMANode: 0},
				{ID: "mig0", Slot: "cuda.device:1g.5gb-mig", SlotKind: SlotUnique, Capacity: dec("1"), NUMANode: 0},
			}})
	}
	cases := []struct {
		description string
		request     map[string]string
		wantErr     error
	}{
		{"unknown slot with a non-zero amount is unsupported", map[string]string{"cpu": "1", "tpu.device": "1"}, ErrUnsupportedSlot},
		{"unknown slot of a known kind is unsupported", map[string]string{"cpu": "1", "cuda.shares": "0.5"}, ErrUnsupportedSlot},
		{"unknown slot with zero is accepted", map[string]string{"cpu": "1", "tpu.device": "0"}, nil},
		{"negative amount is an invalid argument", map[string]string{"cpu": "-1"}, ErrInvalidArgument},
		{"exclusive slots together", map[string]string{"cuda.device": "1", "cuda.device:1g.5gb-mig": "1"}, ErrInvalidCombination},
		{"unique slot with 2", map[string]string{"cuda.device:1g.5gb-mig": "2"}, ErrInvalidArgument},
		{"too much memory", map[string]string{"cpu": "1", "mem": "1001"}, ErrInsufficientResource},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			a := newAllocator()
			_, err := a.Allocate(slotsOf(tc.request))
			checkErr(t, err, tc.wantErr)
			if err != nil {
				for _, u := range a.Snapshot() {
					if !u.Allocated.IsZero() {
						t.Errorf("slot %s holds %s after a failed allocation", u.Slot, u.Allocated)
					}
				}
			}
		})
	}
	t.Run("every requested kind appears in the result, possibly empty", func(t *testing.T) {
		res, err := newAllocator().Allocate(slotsOf(map[string]string{"cpu": "1", "mem": "10", "cuda.device": "0"}))
		checkErr(t, err, nil)
		if da, ok := res["cuda"]; !ok || len(da) != 0 {
			t.Errorf("cuda entry %v, want present and empty", da)
		}
	})
}

func TestNewAllocatorConfiguration(t *testing.T) {
	cases := []struct {
		description string
		cfg         Config
		specs       []MapSpec
	}{
		{"a kind missing from allocation-order", Config{}, []MapSpec{cpuSpec(1, unknownNUMA), {Kind: "ipu", Devices: []Device{{ID: "0", Slot: "ipu.device", Capacity: dec("1")}}}}},
		{"a custom order without mem", Config{AllocationOrder: []string{"cpu"}}, []MapSpec{cpuSpec(1, unknownNUMA), memSpec("1")}},
		{"two maps for one kind", Config{}, []MapSpec{cpuSpec(1, unknownNUMA), cpuSpec(2, unknownNUMA)}},
		{"a slot not prefixed by its kind", Config{}, []MapSpec{{Kind: "cuda", Devices: []Device{{ID: "0", Slot: "rocm.device", Capacity: dec("1")}}}}},
		{"duplicate device IDs", Config{}, []MapSpec{{Kind: "cuda", Devices: []Device{{ID: "0", Slot: "cuda.device", Capacity: dec("1")}, {ID: "0", Slot: "cuda.device", Capacity: dec("1")}}}}},
		{"a bad exclusive pattern", Config{}, []MapSpec{{Kind: "cuda", ExclusiveSlots: []string{"["}, Devices: []Device{{ID: "0", Slot: "cuda.device", Capacity: dec("1")}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			_, err := NewAllocator(tc.cfg, tc.specs)
			checkErr(t, err, ErrConfiguration)
		})
	}
}

func TestRebuildApplyFree(t *testing.T) {
	a := mustAllocator(t, Config{}, cpuSpec(4, unknownNUMA), memSpec("1000"))
	first, err := a.Allocate(Slots{"cpu": dec("2"), "mem": dec("300")})
	checkErr(t, err, nil)
	second, err := a.Allocate(Slots{"cpu": dec("1"), "mem": dec("200")})
	checkErr(t, err, nil)

	t.Run("free refuses to go below zero and changes nothing", func(t *testing.T) {
		bad := Allocation{"cpu": {"cpu": {"0": dec("1")}}, "mem": {"mem": {"root": dec("900")}}}
		err := a.Free(bad)
		checkErr(t, err, ErrInvalidArgument)
		if got := deviceState(t, a, "mem", "root"); !got.Equal(dec("500")) {
			t.Errorf("mem = %s after a refused free", got)
		}
	})
	t.Run("apply refuses unknown devices and changes nothing", func(t *testing.T) {
		err := a.Apply(Allocation{"cpu": {"cpu": {"0": dec("1"), "99": dec("1")}}})
		checkErr(t, err, ErrUnsupportedSlot)
		if got := a.byKind["cpu"].slots[0].allocatedSum(); !got.Equal(dec("3")) {
			t.Errorf("cpu total %s after a refused apply", got)
		}
	})
	t.Run("rebuild from the live containers equals the incremental state", func(t *testing.T) {
		before := a.Snapshot()
		junk := Allocation{"gpu": {"gpu.device": {"0": dec("1")}}}
		err := a.Rebuild([]Allocation{first, junk, second})
		checkErr(t, err, ErrUnsupportedSlot)
		after := a.Snapshot()
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("rebuild changed the state:\n%v\n%v", before, after)
		}
	})
	t.Run("rebuild after a kernel cleanup drops its allocation", func(t *testing.T) {
		checkErr(t, a.Rebuild([]Allocation{second}), nil)
		if got := deviceState(t, a, "mem", "root"); !got.Equal(dec("200")) {
			t.Errorf("mem = %s, want 200", got)
		}
		checkErr(t, a.Free(second), nil)
		for _, u := range a.Snapshot() {
			if !u.Allocated.IsZero() {
				t.Errorf("%s holds %s", u.Slot, u.Allocated)
			}
		}
	})
	t.Run("apply does not check capacity (a restored container holds what it holds)", func(t *testing.T) {
		checkErr(t, a.Apply(Allocation{"mem": {"mem": {"root": dec("1500")}}}), nil)
		_, err := a.Allocate(Slots{"mem": dec("1")})
		checkErr(t, err, ErrInsufficientResource)
	})
}

func TestSnapshotAndTotals(t *testing.T) {
	a := mustAllocator(t, Config{}, cpuSpec(2, func(c int) int { return c }), memSpec("64"))
	_, err := a.Allocate(Slots{"cpu": dec("1"), "mem": dec("16")})
	checkErr(t, err, nil)
	snap := a.Snapshot()
	if len(snap) != 2 || snap[0].Slot != "cpu" || snap[1].Slot != "mem" {
		t.Fatalf("snapshot order %v", snap)
	}
	if !snap[0].Capacity.Equal(dec("2")) || !snap[0].Allocated.Equal(dec("1")) || len(snap[0].Devices) != 2 {
		t.Errorf("cpu usage %+v", snap[0])
	}
	if !snap[1].Devices[0].Allocated.Equal(dec("16")) || !snap[1].Devices[0].Capacity.Equal(dec("64")) {
		t.Errorf("mem usage %+v", snap[1])
	}
	totals := a.SlotTotals()
	if len(totals) != 2 || !totals[0].Total.Equal(dec("2")) || !totals[1].Total.Equal(dec("64")) || totals[1].DeviceKind != "mem" {
		t.Errorf("totals %+v", totals)
	}
}

// TestConcurrentAllocateFree runs many goroutines against one allocator;
// with -race it checks the locking, and the final state must be zero.
func TestConcurrentAllocateFree(t *testing.T) {
	a := mustAllocator(t, Config{}, cpuSpec(16, func(c int) int { return c / 8 }), memSpec("1024"),
		MapSpec{Kind: "cuda", Type: Fractional, Devices: uniformDevices("g", "cuda.shares", SlotCount, "1", "1", "1", "1")})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := range 200 {
				req := Slots{"cpu": decimal.NewFromInt(int64(1 + (w+k)%3)), "mem": dec("64"),
					"cuda.shares": decimal.New(int64(10+(w*k)%90), -2)}
				res, err := a.Allocate(req)
				if err != nil {
					if !errors.Is(err, ErrInsufficientResource) && !errors.Is(err, ErrFragmented) {
						t.Errorf("allocate: %v", err)
					}
					continue
				}
				_ = a.Snapshot()
				if err := a.Free(res); err != nil {
					t.Errorf("free: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for _, u := range a.Snapshot() {
		if !u.Allocated.IsZero() {
			t.Errorf("%s holds %s after all frees", u.Slot, u.Allocated)
		}
	}
}
