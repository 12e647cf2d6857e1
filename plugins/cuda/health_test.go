package cuda

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
)

func TestHealthTransitions(t *testing.T) {
	const recovery = 200 * time.Millisecond
	spec, err := nvmldriver.LoadFakeSpec(fixture8GPU)
	if err != nil {
		t.Fatal(err)
	}
	uuidOf := func(i int) string { return spec.GPUs[i].UUID }
	migParent := uuidOf(migParentIndex)
	migIDs := func() []string {
		var ids []string
		for _, m := range spec.GPUs[migParentIndex].Mig {
			ids = append(ids, m.UUID)
		}
		return ids
	}()
	tests := []struct {
		description   string
		events        []nvmldriver.Event
		wantUnhealthy []string
		wantHealthy   []string
		wantReason    string
	}{
		{
			description:   "a critical XID marks its GPU unhealthy, the rest stay healthy",
			events:        []nvmldriver.Event{{DeviceUUID: uuidOf(2), Kind: nvmldriver.EventXid, Xid: 79}},
			wantUnhealthy: []string{"2"},
			wantHealthy:   []string{"0", "1", "3"},
			wantReason:    "XID 79",
		},
		{
			description:   "a double-bit ECC error marks its GPU unhealthy",
			events:        []nvmldriver.Event{{DeviceUUID: uuidOf(7), Kind: nvmldriver.EventDoubleBitECC}},
			wantUnhealthy: []string{"7"},
			wantHealthy:   []string{"6"},
			wantReason:    "double-bit ECC",
		},
		{
			description: "ignored XIDs and single-bit ECC leave GPUs healthy",
			events: []nvmldriver.Event{
				{DeviceUUID: uuidOf(0), Kind: nvmldriver.EventXid, Xid: 13},
				{DeviceUUID: uuidOf(0), Kind: nvmldriver.EventXid, Xid: 109},
				{DeviceUUID: uuidOf(0), Kind: nvmldriver.EventSingleBitECC},
				// A later critical event on another GPU proves the earlier
				// ones were handled (events are handled in order).
				{DeviceUUID: uuidOf(1), Kind: nvmldriver.EventXid, Xid: 48},
			},
			wantUnhealthy: []string{"1"},
			wantHealthy:   []string{"0"},
			wantReason:    "XID 48",
		},
		{
			description:   "an XID on a MIG parent marks all its instances",
			events:        []nvmldriver.Event{{DeviceUUID: migParent, Kind: nvmldriver.EventXid, Xid: 94}},
			wantUnhealthy: migIDs,
			wantHealthy:   []string{"4", "6"},
			wantReason:    "XID 94",
		},
		{
			description:   "an event naming no GPU marks every GPU",
			events:        []nvmldriver.Event{{Kind: nvmldriver.EventXid, Xid: 79}},
			wantUnhealthy: append([]string{"0", "1", "2", "3", "4", "6", "7"}, migIDs...),
			wantReason:    "XID 79",
		},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			fake := nvmldriver.NewFake(spec)
			p := configuredPlugin(t, map[string]any{
				keySysfsRoot: fixtureSysfs, keyHealthRecoveryPeriod: recovery.String(), keyAttachMethod: "cdi",
			}, sdk.AgentInfo{}, WithDriver(fake))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			updates, err := p.WatchDevices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first := devicesByID(<-updates)
			for id, d := range first {
				if d.Health != sdk.HealthHealthy {
					t.Fatalf("device %s starts %s", id, d.Health)
				}
			}
			injected := time.Now()
			for _, ev := range tc.events {
				fake.InjectEvent(ev)
			}
			allUnhealthy := func(byID map[string]sdk.Device) bool {
				for _, id := range tc.wantUnhealthy {
					if byID[id].Health != sdk.HealthUnhealthy {
						return false
					}
				}
				return true
			}
			got := waitForDevices(t, updates, 5*time.Second, "unhealthy devices", allUnhealthy)
			for _, id := range tc.wantUnhealthy {
				if !strings.Contains(got[id].HealthDescription, tc.wantReason) {
					t.Errorf("device %s health description %q lacks %q", id, got[id].HealthDescription, tc.wantReason)
				}
			}
			for _, id := range tc.wantHealthy {
				if got[id].Health != sdk.HealthHealthy {
					t.Errorf("device %s is %s (%s), want healthy", id, got[id].Health, got[id].HealthDescription)
				}
			}
			hw, _ := p.HardwareInfo(context.Background())
			if hw.Status != sdk.HealthDegraded || !strings.Contains(hw.StatusInfo, tc.wantReason) {
				t.Errorf("hardware info %+v, want degraded naming %q", hw, tc.wantReason)
			}
			recovered := waitForDevices(t, updates, 5*time.Second, "recovery", func(byID map[string]sdk.Device) bool {
				for _, d := range byID {
					if d.Health != sdk.HealthHealthy {
						return false
					}
				}
				return true
			})
			if elapsed := time.Since(injected); elapsed < recovery {
				t.Fatalf("recovered after %s, before the %s recovery period", elapsed, recovery)
			}
			if len(recovered) != len(first) {
				t.Fatalf("recovered list has %d devices, want %d", len(recovered), len(first))
			}
			if hw, _ := p.HardwareInfo(context.Background()); hw.Status != sdk.HealthHealthy {
				t.Fatalf("after recovery hardware info %+v", hw)
			}
		})
	}
}

// A new event during the recovery period restarts it.
func TestHealthRecoveryRestartsOnNewEvents(t *testing.T) {
	const recovery = 300 * time.Millisecond
	fake, spec := injectedFake(t)
	p := configuredPlugin(t, map[string]any{keySysfsRoot: fixtureSysfs, keyHealthRecoveryPeriod: recovery.String()},
		dockerAgent(), WithDriver(fake))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, _ := p.WatchDevices(ctx)
	<-updates
	xid := nvmldriver.Event{DeviceUUID: spec.GPUs[3].UUID, Kind: nvmldriver.EventXid, Xid: 79}
	fake.InjectEvent(xid)
	waitForDevices(t, updates, 5*time.Second, "unhealthy", func(m map[string]sdk.Device) bool { return m["3"].Health == sdk.HealthUnhealthy })
	time.Sleep(recovery / 2)
	second := time.Now()
	fake.InjectEvent(xid)
	waitForDevices(t, updates, 5*time.Second, "recovery", func(m map[string]sdk.Device) bool { return m["3"].Health == sdk.HealthHealthy })
	if elapsed := time.Since(second); elapsed < recovery {
		t.Fatalf("recovered %s after the second event, before the %s period", elapsed, recovery)
	}
}

// Re-discovery every watch interval reports hot-plugged GPUs.
func TestWatchReportsDeviceChanges(t *testing.T) {
	fake, spec := injectedFake(t)
	p := configuredPlugin(t, map[string]any{keySysfsRoot: fixtureSysfs, keyWatchInterval: "20ms"}, dockerAgent(), WithDriver(fake))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, _ := p.WatchDevices(ctx)
	before := len(<-updates)
	smaller := spec
	smaller.GPUs = spec.GPUs[:2]
	fake.SetSpec(smaller)
	got := waitForDevices(t, updates, 5*time.Second, "two devices", func(m map[string]sdk.Device) bool { return len(m) == 2 })
	if _, ok := got["1"]; !ok || before != 11 {
		t.Fatalf("before %d devices, after %v", before, got)
	}
	cancel()
	for range updates {
		// Drain until the plugin closes the channel on cancellation.
	}
}

func TestIgnoredXidsConfigurable(t *testing.T) {
	fake, spec := injectedFake(t)
	p := configuredPlugin(t, map[string]any{
		keySysfsRoot: fixtureSysfs, keyIgnoredXids: []any{float64(79)}, keyHealthRecoveryPeriod: "1h",
	}, dockerAgent(), WithDriver(fake))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, _ := p.WatchDevices(ctx)
	<-updates
	fake.InjectEvent(nvmldriver.Event{DeviceUUID: spec.GPUs[0].UUID, Kind: nvmldriver.EventXid, Xid: 79})
	// 13 is ignored by default but not in this configured list.
	fake.InjectEvent(nvmldriver.Event{DeviceUUID: spec.GPUs[1].UUID, Kind: nvmldriver.EventXid, Xid: 13})
	got := waitForDevices(t, updates, 5*time.Second, "GPU 1 unhealthy", func(m map[string]sdk.Device) bool {
		return m["1"].Health == sdk.HealthUnhealthy
	})
	if got["0"].Health != sdk.HealthHealthy {
		t.Fatalf("XID 79 is configured as ignored, GPU 0 is %s", got["0"].Health)
	}
	if !strings.Contains(got["1"].HealthDescription, "XID "+strconv.Itoa(13)) {
		t.Fatalf("description %q", got["1"].HealthDescription)
	}
}

// TestCloseReturnsWithinAnEventWaitSlice: Close waits for the monitor,
// whose NVML wait cannot be cancelled, so each wait must be short enough
// for Close (and with it nvmlShutdown) to finish well inside go-plugin's
// 2 s. main gives Close 500 ms before it abandons NVML.
func TestCloseReturnsWithinAnEventWaitSlice(t *testing.T) {
	for _, stopAfter := range []time.Duration{0, 500 * time.Millisecond, 3 * time.Second} {
		t.Run("closed "+stopAfter.String()+" after Configure", func(t *testing.T) {
			t.Parallel()
			spec, err := nvmldriver.LoadFakeSpec(fixture8GPU)
			if err != nil {
				t.Fatal(err)
			}
			spec.EventWait = nvmldriver.FakeWaitNVML
			p := configuredPlugin(t, fixtureConfig(nil), dockerAgent(), WithDriver(nvmldriver.NewFake(spec)))
			time.Sleep(stopAfter)
			start := time.Now()
			p.Close()
			if took := time.Since(start); took > eventWaitSlice+100*time.Millisecond {
				t.Fatalf("Close took %s; an event wait slice is %s", took, eventWaitSlice)
			}
		})
	}
}
