package heartbeat

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/host/internal/wiremsg/wiremsgtest"
)

const agentID = "i-heartbeat"

func testInfo() Info {
	return Info{
		IP: "10.0.0.5", Region: "local", ScalingGroup: "default", RPCAddr: "10.0.0.5:6001",
		PublicKey: []byte("z85-public-key"), PublicHost: "node1.example",
		Slots: []Slot{
			{Name: "cpu", Unit: "count", Available: decimal.NewFromInt(2)},
			{Name: "mem", Unit: "bytes", Available: decimal.NewFromInt(4294967296)},
		},
		Version:        "26.8.1",
		ComputePlugins: []ComputePlugin{{Key: "cpu", Version: "1.0.0", Extra: wiremsg.Dict{{Key: "agent_version", Value: "26.8.1"}}}},
		Architecture:   "x86_64", AutoTerminateAbusingKernel: true,
		Images: []Image{
			{Canonical: "cr.backend.ai/stable/python:3.11", Digest: "sha256:aaa", Architecture: "x86_64"},
			{Canonical: "cr.backend.ai/stable/ubuntu:22.04", Digest: "sha256:bbb", Architecture: "x86_64"},
		},
	}
}

func newBus(t *testing.T, srv *redistest.Server, enc events.Encoding) *events.Bus {
	t.Helper()
	bus, err := events.New(context.Background(), events.Options{
		AgentID: agentID, Redis: &events.RedisOptions{Addr: srv.Addr}, Encoding: enc,
		QueueDir: t.TempDir(), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

func TestHeartbeatAsThe268ManagerReadsIt(t *testing.T) {
	srv := redistest.Start(t, false)
	ctx := context.Background()
	opts := Options{AgentID: agentID, Bus: newBus(t, srv, events.EncodingArgs), Images: srv.Client(t, events.ImageDB),
		Source: SourceFunc(func(context.Context) (Info, error) { return testInfo(), nil })}
	reader := managertest.NewReader(t, srv.Addr)
	if err := Beat(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if got := managertest.Names(reader.Stream()); len(got) != 1 || got[0] != "agent_heartbeat" {
		t.Fatalf("the manager reads %v, want one agent_heartbeat", got)
	}
	msgs, err := srv.Client(t, events.StreamDB).XRange(ctx, events.StreamKey, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stream: %v, %v", msgs, err)
	}
	if msgs[0].Values["name"] != "agent_heartbeat" || msgs[0].Values["source"] != agentID {
		t.Fatalf("entry %v", msgs[0].Values)
	}
	raw := []byte(msgs[0].Values["args"].(string))
	// spec §2's pickle of ResourceSlot({'cpu': Decimal('2'), 'mem': Decimal('4294967296')}), as ext 8
	if !bytes.Contains(raw, wiremsgtest.ResourceSlot.Msgpack()) {
		t.Error("args do not hold the golden ResourceSlot pickle as ext 8")
	}
	decoded, err := wiremsg.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	tuple := decoded.([]any)
	if len(tuple) != 1 {
		t.Fatalf("args tuple has %d items", len(tuple))
	}
	info := tuple[0].(wiremsg.Map)
	cpuUnit := info["slot_key_and_units"].(wiremsg.Map)[wiremsg.SlotName("cpu")]
	memUnit := info["slot_key_and_units"].(wiremsg.Map)[wiremsg.SlotName("mem")]
	cases := []struct {
		description string
		got, want   any
	}{
		{"ip", info["ip"], "10.0.0.5"},
		{"region", info["region"], "local"},
		{"scaling_group", info["scaling_group"], "default"},
		{"addr", info["addr"], "tcp://10.0.0.5:6001"},
		{"public_key is bytes", fmt.Sprintf("%T:%s", info["public_key"], info["public_key"]), "[]uint8:z85-public-key"},
		{"public_host", info["public_host"], "node1.example"},
		{"available_resource_slots", fmt.Sprint(info["available_resource_slots"]), "[{cpu 2} {mem 4294967296}]"}, // in the order the slots were given
		{"cpu unit is SlotTypes", cpuUnit.(wiremsg.Enum).Class + "=" + cpuUnit.(wiremsg.Enum).String(), "SlotTypes=count"},
		{"mem unit is SlotTypes", memUnit.(wiremsg.Enum).String(), "bytes"},
		{"version", info["version"], "26.8.1"},
		{"compute_plugins", fmt.Sprint(info["compute_plugins"]), "map[cpu:map[agent_version:26.8.1 version:1.0.0]]"},
		{"images", decompressImages(t, info["images"].([]byte)), `[["cr.backend.ai/stable/python:3.11","sha256:aaa"],["cr.backend.ai/stable/ubuntu:22.04","sha256:bbb"]]`},
		{"images_opts", fmt.Sprint(info["images_opts"]), "map[compression:zlib]"},
		{"architecture", info["architecture"], "x86_64"},
		{"auto_terminate_abusing_kernel", info["auto_terminate_abusing_kernel"], true},
		{"field count", len(info), 14},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	installed, err := srv.Client(t, events.ImageDB).Get(ctx, InstalledImagesKey(agentID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled := `[{"canonical":"cr.backend.ai/stable/python:3.11","digest":"sha256:aaa","architecture":"x86_64"},{"canonical":"cr.backend.ai/stable/ubuntu:22.04","digest":"sha256:bbb","architecture":"x86_64"}]`
	if installed != wantInstalled {
		t.Errorf("installed_image = %s\nwant %s", installed, wantInstalled)
	}
}

func decompressImages(t *testing.T, compressed []byte) string {
	t.Helper()
	zr, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	packed, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wiremsg.Unmarshal(packed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestHeartbeatJSONPayload(t *testing.T) {
	info := testInfo()
	info.PublicKey, info.Region, info.PublicHost = nil, "", ""
	ev, err := Event(info)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev.Body())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent_info":{"ip":"10.0.0.5","region":"local","scaling_group":"default","addr":"tcp://10.0.0.5:6001",` +
		`"public_key":null,"public_host":"10.0.0.5",` +
		`"available_resource_slots":[{"resource_type":"cpu","quantity":"2"},{"resource_type":"mem","quantity":"4294967296"}],` +
		`"slot_key_and_units":{"cpu":"count","mem":"bytes"},"version":"26.8.1",` +
		`"compute_plugins":{"cpu":{"version":"1.0.0","agent_version":"26.8.1"}},"architecture":"x86_64","auto_terminate_abusing_kernel":true}}`
	if string(b) != want {
		t.Errorf("payload\n got %s\nwant %s", b, want)
	}
}

func TestRunBeatsAtOnceAndThenEveryInterval(t *testing.T) {
	srv := redistest.Start(t, false)
	stream := srv.Client(t, events.StreamDB)
	cases := []struct {
		description string
		interval    time.Duration
		beats       int64 // heartbeats in the stream before Run is stopped
		only        bool  // no further beat: the interval has not passed
	}{
		// An hour-long interval: only the immediate first beat can come.
		{"first beat immediately, long interval", time.Hour, 1, true},
		{"short interval repeats", 10 * time.Millisecond, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := stream.Del(ctx, events.StreamKey).Err(); err != nil {
				t.Fatal(err)
			}
			info := testInfo()
			info.Images = nil
			var calls atomic.Int64
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Options{AgentID: agentID, Bus: newBus(t, srv, events.EncodingArgs), Interval: tc.interval,
					Source: SourceFunc(func(context.Context) (Info, error) { calls.Add(1); return info, nil }), Logger: zerolog.Nop()})
			}()
			xlen := func() int64 {
				n, err := stream.XLen(context.Background(), events.StreamKey).Result()
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d heartbeats", tc.beats), func() bool { return xlen() >= tc.beats })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := xlen(); tc.only && (n != tc.beats || calls.Load() != tc.beats) {
				t.Errorf("%d heartbeats from %d rounds, want only %d", n, calls.Load(), tc.beats)
			}
		})
	}
}

// An Info without region or public_host still passes the manager's
// AgentInfo and the NOT NULL agents.region (data/agent/types.py,
// models/agent/row.py): region "local" as upstream's default, public_host
// the agent's address.
func TestHeartbeatWithoutRegionOrPublicHost(t *testing.T) {
	srv := redistest.Start(t, false)
	reader := managertest.NewReader(t, srv.Addr)
	info := testInfo()
	info.Region, info.PublicHost = "", ""
	opts := Options{AgentID: agentID, Bus: newBus(t, srv, events.EncodingArgs),
		Source: SourceFunc(func(context.Context) (Info, error) { return info, nil })}
	if err := Beat(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	ev := reader.WaitStream(5*time.Second, managertest.Named("agent_heartbeat"))
	got := ev.Args[0].(wiremsg.Map)
	if got["region"] != "local" || got["public_host"] != "10.0.0.5" {
		t.Errorf("region %v, public_host %v; want local, 10.0.0.5", got["region"], got["public_host"])
	}
}
