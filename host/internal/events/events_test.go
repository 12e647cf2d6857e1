package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

const (
	testAgentID = "i-test-agent"
	kernelA     = "8c9a6f52-3bd4-4c3c-9a4c-61d1f4f1f0a1"
	sessionA    = "0f6b5f3e-7f44-4bbd-a3f0-2b5f0e9f7d11"
)

var testImageRef = wiremsg.ImageRef{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai", Architecture: "x86_64"}

// normalize turns decoded msgpack into JSON-comparable values: maps with
// string keys, decimals and enums tagged so they cannot pass for strings.
func normalize(v any) any {
	switch x := v.(type) {
	case wiremsg.Map:
		m := map[string]any{}
		for k, item := range x {
			m[fmt.Sprint(normalize(k))] = normalize(item)
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
	case wiremsg.Enum:
		return "enum:" + x.Module + "." + x.Class + ":" + x.String()
	case wiremsg.SlotName:
		return "slotname:" + string(x)
	case wiremsg.ImageRef:
		return fmt.Sprintf("imageref:%+v", x)
	case wiremsg.ResourceSlot:
		slots := slices.SortedFunc(slices.Values(x), func(a, b wiremsg.Slot) int { return strings.Compare(a.Name, b.Name) })
		parts := make([]string, len(slots))
		for i, slot := range slots {
			parts[i] = slot.Name + "=" + slot.Amount.String()
		}
		return "resourceslot:" + strings.Join(parts, ",")
	case []byte:
		return "bin:" + base64.StdEncoding.EncodeToString(x)
	}
	return v
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const reasonEnum = "enum:ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason:"

// everyEvent lists each event the agent emits with its decoded 26.8.x args
// and its main-branch JSON payload.
var everyEvent = []struct {
	description string
	event       Event
	wantArgs    string
	wantPayload string
}{
	{"agent_started", AgentStarted{Reason: ReasonSelfStarted}, `["self-started"]`, `{"reason":"self-started"}`},
	{"agent_terminated", AgentTerminated{Reason: ReasonShutdown}, `["shutdown"]`, `{"reason":"shutdown"}`},
	{"agent_error with traceback and env",
		AgentError{Message: "boom", Traceback: "tb", ContextEnv: map[string]string{"b": "2", "a": "1"}},
		`["boom","tb",null,{"a":"1","b":"2"},"ERROR"]`,
		`{"message":"boom","traceback":"tb","user":null,"context_env":{"a":"1","b":"2"},"severity":"ERROR"}`},
	{"agent_heartbeat",
		AgentHeartbeat{ArgsInfo: wiremsg.Dict{{Key: "ip", Value: "10.0.0.1"}, {Key: "available_resource_slots", Value: wiremsg.ResourceSlot{{Name: "cpu", Amount: decimal.NewFromInt(4)}}}},
			BodyInfo: wiremsg.Dict{{Key: "ip", Value: "10.0.0.1"}}},
		`[{"available_resource_slots":"resourceslot:cpu=4","ip":"10.0.0.1"}]`, `{"agent_info":{"ip":"10.0.0.1"}}`},
	{"kernel_preparing", KernelPreparing{KernelID: kernelA, SessionID: sessionA},
		`["` + kernelA + `","` + sessionA + `","",{}]`, `{"kernel_id":"` + kernelA + `","session_id":"` + sessionA + `","reason":""}`},
	{"kernel_pulling with the image as reason", KernelPulling{KernelID: kernelA, SessionID: sessionA, Reason: "cr.backend.ai/stable/python:3.11"},
		`["` + kernelA + `","` + sessionA + `","cr.backend.ai/stable/python:3.11",{}]`,
		`{"kernel_id":"` + kernelA + `","session_id":"` + sessionA + `","reason":"cr.backend.ai/stable/python:3.11"}`},
	{"kernel_creating", KernelCreating{KernelID: kernelA, SessionID: sessionA},
		`["` + kernelA + `","` + sessionA + `","",{}]`, `{"kernel_id":"` + kernelA + `","session_id":"` + sessionA + `","reason":""}`},
	{"kernel_started with creation info",
		KernelStarted{KernelID: kernelA, SessionID: sessionA, CreationInfo: wiremsg.Dict{{Key: "container_id", Value: "c0ffee"}, {Key: "repl_in_port", Value: 30000}}},
		`["` + kernelA + `","` + sessionA + `","",{"container_id":"c0ffee","repl_in_port":30000}]`,
		`{"kernel_id":"` + kernelA + `","session_id":"` + sessionA + `","reason":"","creation_info":{"container_id":"c0ffee","repl_in_port":30000}}`},
	{"kernel_terminated reason is the enum", KernelTerminated{KernelID: kernelA, SessionID: sessionA, Reason: "user-requested", ExitCode: 137},
		`["` + kernelA + `","` + sessionA + `","` + reasonEnum + `user-requested",137]`,
		`{"kernel_id":"` + kernelA + `","session_id":"` + sessionA + `","reason":"user-requested","exit_code":137}`},
	{"session_success", SessionSuccess{SessionID: sessionA, Reason: "task-finished"},
		`["` + sessionA + `","` + reasonEnum + `task-finished",0]`, `{"session_id":"` + sessionA + `","reason":"task-finished","exit_code":0}`},
	{"session_failure", SessionFailure{SessionID: sessionA, Reason: "task-timeout", ExitCode: -2},
		`["` + sessionA + `","` + reasonEnum + `task-timeout",-2]`, `{"session_id":"` + sessionA + `","reason":"task-timeout","exit_code":-2}`},
	{"execution_started", ExecutionStarted{SessionID: sessionA}, `["` + sessionA + `"]`, `{"session_id":"` + sessionA + `"}`},
	{"execution_finished", ExecutionFinished{SessionID: sessionA}, `["` + sessionA + `"]`, `{"session_id":"` + sessionA + `"}`},
	{"execution_timeout", ExecutionTimeout{SessionID: sessionA}, `["` + sessionA + `"]`, `{"session_id":"` + sessionA + `"}`},
	{"image_pull_started with ref", ImagePullStarted{Image: "cr.backend.ai/stable/python:3.11", AgentID: testAgentID, Timestamp: 1.5, ImageRef: &testImageRef},
		`["cr.backend.ai/stable/python:3.11","i-test-agent",1.5,"imageref:{Name:python Project:stable Tag:3.11 Registry:cr.backend.ai Architecture:x86_64 IsLocal:false}"]`,
		`{"image":"cr.backend.ai/stable/python:3.11","agent_id":"i-test-agent","timestamp":1.5,"image_ref":{"name":"python","project":"stable","tag":"3.11","registry":"cr.backend.ai","architecture":"x86_64","is_local":false}}`},
	{"image_pull_finished without msg or ref", ImagePullFinished{Image: "img", AgentID: testAgentID, Timestamp: 2},
		`["img","i-test-agent",2,null,null]`, `{"image":"img","agent_id":"i-test-agent","timestamp":2,"msg":null,"image_ref":null}`},
	{"image_pull_failed without ref", ImagePullFailed{Image: "img", AgentID: testAgentID, Msg: "timeout (s:60)"},
		`["img","i-test-agent","timeout (s:60)"]`, `{"image":"img","agent_id":"i-test-agent","msg":"timeout (s:60)","image_ref":null}`},
	{"agent_installed_images_remove", AgentInstalledImagesRemove{Images: []ScannedImage{
		{Canonical: "cr.backend.ai/stable/python:3.11", Digest: "sha256:aaa"}, {Canonical: "busybox:latest", Digest: "sha256:bbb"},
	}},
		`[{"busybox:latest":{"canonical":"busybox:latest","digest":"sha256:bbb"},"cr.backend.ai/stable/python:3.11":{"canonical":"cr.backend.ai/stable/python:3.11","digest":"sha256:aaa"}}]`,
		`{"scanned_images":{"cr.backend.ai/stable/python:3.11":{"canonical":"cr.backend.ai/stable/python:3.11","digest":"sha256:aaa"},"busybox:latest":{"canonical":"busybox:latest","digest":"sha256:bbb"}}}`},
	{"do_sync_kernel_logs", DoSyncKernelLogs{KernelID: kernelA, ContainerID: "c0ffee"},
		`["` + kernelA + `","c0ffee"]`, `{"kernel_id":"` + kernelA + `","container_id":"c0ffee"}`},
	{"bgtask_updated as a task starts", BgtaskUpdated{TaskID: kernelA, Message: "Task started"},
		`["` + kernelA + `",0,0,"Task started"]`,
		`{"task_id":"` + kernelA + `","current_progress":0,"total_progress":0,"message":"Task started"}`},
	{"bgtask_done without message", BgtaskDone{TaskID: kernelA},
		`["` + kernelA + `",null]`, `{"task_id":"` + kernelA + `","message":null}`},
	{"bgtask_failed with the reason", BgtaskFailed{TaskID: kernelA, Message: "pull failed"},
		`["` + kernelA + `","pull failed"]`, `{"task_id":"` + kernelA + `","message":"pull failed"}`},
	{"bgtask_cancelled as upstream's _observe_bgtask", BgtaskCancelled{TaskID: kernelA, Message: BgtaskCancelledMessage},
		`["` + kernelA + `","Task cancelled"]`, `{"task_id":"` + kernelA + `","message":"Task cancelled"}`},
}

func newTestBus(t *testing.T, srv *redistest.Server, dir string, enc Encoding) *Bus {
	t.Helper()
	opts := Options{AgentID: testAgentID, Encoding: enc, QueueDir: dir, Logger: zerolog.Nop(),
		SendTimeout: time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	if srv != nil {
		opts.Redis = &RedisOptions{Addr: srv.Addr}
	}
	b, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readStream(t *testing.T, c *redis.Client) []redis.XMessage {
	t.Helper()
	msgs, err := c.XRange(context.Background(), StreamKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestEveryEventAsTheManagerReadsIt(t *testing.T) {
	srv := redistest.Start(t, false)
	streamDB := srv.Client(t, StreamDB)
	for _, enc := range []Encoding{EncodingArgs, EncodingJSONPayload} {
		for _, tc := range everyEvent {
			t.Run(enc.String()+"/"+tc.description, func(t *testing.T) {
				ctx := context.Background()
				if err := streamDB.Del(ctx, StreamKey).Err(); err != nil {
					t.Fatal(err)
				}
				sub := streamDB.Subscribe(ctx, BroadcastChannel)
				defer sub.Close()
				if _, err := sub.Receive(ctx); err != nil {
					t.Fatal(err)
				}
				bus := newTestBus(t, srv, t.TempDir(), enc)
				defer bus.Close()
				if err := bus.Emit(ctx, tc.event); err != nil {
					t.Fatal(err)
				}
				argField, want := "args", tc.wantArgs
				if enc == EncodingJSONPayload {
					argField, want = "payload", tc.wantPayload
				}
				msgs := readStream(t, streamDB)
				if _, only := tc.event.(BroadcastOnly); only {
					if len(msgs) != 0 {
						t.Fatalf("a broadcast-only event is in the stream: %v", msgs)
					}
					if got := decodeArg(t, enc, checkBroadcast(t, sub, tc.event, argField, "")); got != want {
						t.Errorf("broadcast %s\n got %s\nwant %s", argField, got, want)
					}
					return
				}
				if len(msgs) != 1 {
					t.Fatalf("stream has %d entries, want 1", len(msgs))
				}
				fields := msgs[0].Values
				if fields["name"] != tc.event.Name() || fields["source"] != testAgentID {
					t.Errorf("name/source = %v/%v", fields["name"], fields["source"])
				}
				if fields["metadata"] != emptyMetadata {
					t.Errorf("metadata = %v", fields["metadata"])
				}
				if len(fields) != 4 {
					t.Errorf("fields = %v, want name, source, %s, metadata", fields, argField)
				}
				raw, _ := fields[argField].(string)
				// The stream entry exactly as the 26.8 manager reads it. The
				// heartbeat here carries a fragment of AgentInfo; the whole
				// one is built and decoded strictly in the heartbeat package.
				if enc == EncodingArgs && tc.event.Name() != "agent_heartbeat" {
					pairs := []string{"name", fields["name"].(string), "source", fields["source"].(string), argField, raw, "metadata", fields["metadata"].(string)}
					if _, err := managertest.DecodeStreamEntry(pairs); err != nil {
						t.Errorf("the manager cannot decode it: %v", err)
					}
				}
				got := decodeArg(t, enc, raw)
				if got != want {
					t.Errorf("%s\n got %s\nwant %s", argField, got, want)
				}
				checkBroadcast(t, sub, tc.event, argField, raw)
			})
		}
	}
}

func decodeArg(t *testing.T, enc Encoding, raw string) string {
	t.Helper()
	if enc == EncodingJSONPayload {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("payload is not JSON: %v", err)
		}
		return raw
	}
	v, err := wiremsg.Unmarshal([]byte(raw))
	if err != nil {
		t.Fatalf("args do not decode: %v", err)
	}
	return jsonOf(t, normalize(v))
}

// checkBroadcast reads events_all: broadcast events carry the same
// arguments (base64 for msgpack), the others publish nothing. It returns
// the broadcast's argument value; streamValue "" skips the comparison with
// the stream entry (broadcast-only events have none).
func checkBroadcast(t *testing.T, sub *redis.PubSub, ev Event, argField, streamValue string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	msg, err := sub.ReceiveMessage(ctx)
	if !ev.Broadcast() {
		if err == nil {
			t.Errorf("%s published %q, want nothing", ev.Name(), msg.Payload)
		}
		return ""
	}
	if err != nil {
		t.Fatalf("no broadcast for %s: %v", ev.Name(), err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(msg.Payload), &got); err != nil {
		t.Fatal(err)
	}
	value := got[argField]
	if argField == "args" {
		if _, err := managertest.DecodeBroadcast(msg.Payload); err != nil {
			t.Errorf("the manager cannot decode the broadcast: %v", err)
		}
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			t.Fatal(err)
		}
		value = string(b)
	}
	if got["name"] != ev.Name() || got["source"] != testAgentID || (streamValue != "" && value != streamValue) || got["metadata"] != emptyMetadata {
		t.Errorf("broadcast %v does not match the stream entry", got)
	}
	return value
}

func TestOutageQueuesLifecycleEventsInOrder(t *testing.T) {
	cases := []struct {
		description      string
		restartBusInside bool
	}{
		{"same bus throughout", false},
		{"bus restarted over the same queue during the outage", true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t, true)
			queueDir := t.TempDir()
			bus := newTestBus(t, srv, queueDir, EncodingArgs)
			defer func() { _ = bus.Close() }()
			mustEmit(t, bus, AgentStarted{Reason: ReasonSelfStarted})

			srv.Stop(t)
			heartbeat := AgentHeartbeat{ArgsInfo: wiremsg.Dict{}, BodyInfo: wiremsg.Dict{}}
			if err := bus.Emit(ctx, heartbeat); !errors.Is(err, ErrDropped) {
				t.Errorf("heartbeat at the start of the outage: %v, want ErrDropped", err)
			}
			mustEmit(t, bus, KernelPreparing{KernelID: kernelA, SessionID: sessionA})
			mustEmit(t, bus, KernelCreating{KernelID: kernelA, SessionID: sessionA})
			if err := bus.Emit(ctx, heartbeat); !errors.Is(err, ErrDropped) {
				t.Errorf("heartbeat with events queued: %v, want ErrDropped", err)
			}
			if tc.restartBusInside {
				mustEmit(t, bus, AgentTerminated{Reason: ReasonShutdown})
				if err := bus.Close(); err != nil {
					t.Fatal(err)
				}
				bus = newTestBus(t, srv, queueDir, EncodingArgs)
				if got := bus.QueueDepth(); got != 3 {
					t.Fatalf("queue depth after restart = %d, want 3", got)
				}
				mustEmit(t, bus, AgentStarted{Reason: ReasonSelfStarted})
			}
			mustEmit(t, bus, KernelStarted{KernelID: kernelA, SessionID: sessionA})
			mustEmit(t, bus, KernelTerminated{KernelID: kernelA, SessionID: sessionA, Reason: "self-terminated"})

			srv.StartAgain(t)
			want := []string{"agent_started", "kernel_preparing", "kernel_creating"}
			if tc.restartBusInside {
				want = append(want, "agent_terminated", "agent_started")
			}
			want = append(want, "kernel_started", "kernel_terminated")
			streamDB := srv.Client(t, StreamDB)
			var names []string
			testutil.Eventually(t, 10*time.Second, "the queued events in the stream", func() bool {
				names = names[:0]
				for _, m := range readStream(t, streamDB) {
					names = append(names, m.Values["name"].(string))
				}
				return len(names) >= len(want)
			})
			if fmt.Sprint(names) != fmt.Sprint(want) {
				t.Errorf("stream = %v\nwant     %v", names, want)
			}
			testutil.Eventually(t, 5*time.Second, "the queue to drain", func() bool { return bus.QueueDepth() == 0 })
			// With the queue drained, events go straight through again.
			mustEmit(t, bus, ExecutionStarted{SessionID: sessionA})
			if n := len(readStream(t, streamDB)); n != len(want)+1 {
				t.Errorf("stream has %d entries after recovery, want %d", n, len(want)+1)
			}
		})
	}
}

func mustEmit(t *testing.T, bus *Bus, ev Event) {
	t.Helper()
	if err := bus.Emit(context.Background(), ev); err != nil {
		t.Fatalf("emit %s: %v", ev.Name(), err)
	}
}

func TestWithoutRedisEventsGoToTheRing(t *testing.T) {
	var logBuf bytes.Buffer
	bus, err := New(context.Background(), Options{AgentID: testAgentID, RingSize: 3, Logger: zerolog.New(&logBuf)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if !strings.Contains(logBuf.String(), "no Redis configured") {
		t.Errorf("no start-up notice in the log: %s", logBuf.String())
	}
	for i := range 5 {
		mustEmit(t, bus, KernelTerminated{KernelID: fmt.Sprint(i), SessionID: sessionA, Reason: "user-requested"})
	}
	if n := strings.Count(logBuf.String(), "no Redis configured"); n != 1 {
		t.Errorf("notice logged %d times, want once", n)
	}
	cases := []struct {
		description string
		method      string
		query       string
		wantStatus  int
		wantKernels []string
	}{
		{"all kept events, oldest first; the ring keeps the last three", http.MethodGet, "", http.StatusOK, []string{"2", "3", "4"}},
		{"events after a sequence number", http.MethodGet, "?after=4", http.StatusOK, []string{"4"}},
		{"bad sequence number", http.MethodGet, "?after=x", http.StatusBadRequest, nil},
		{"POST is refused", http.MethodPost, "", http.StatusMethodNotAllowed, nil},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			rec := httptest.NewRecorder()
			bus.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, "/v1/events"+tc.query, nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusOK {
				return
			}
			var resp struct {
				Redis  bool
				Events []RecentEvent
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			var kernels []string
			for _, e := range resp.Events {
				var body struct {
					KernelID string `json:"kernel_id"`
				}
				if err := json.Unmarshal(e.Body, &body); err != nil {
					t.Fatal(err)
				}
				kernels = append(kernels, body.KernelID)
			}
			if resp.Redis || fmt.Sprint(kernels) != fmt.Sprint(tc.wantKernels) {
				t.Errorf("redis=%v kernels=%v, want false %v", resp.Redis, kernels, tc.wantKernels)
			}
		})
	}
}

func TestParseEncoding(t *testing.T) {
	cases := []struct {
		description string
		in          string
		want        Encoding
		wantErr     bool
	}{
		{"default is the 26.8.x msgpack tuple", "", EncodingArgs, false},
		{"msgpack", "msgpack", EncodingArgs, false},
		{"json", "JSON", EncodingJSONPayload, false},
		{"unknown", "pickle", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := ParseEncoding(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseEncoding(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

// TestSpoolKeepsWhereAnEventGoes: an event queued during an outage is
// delivered later exactly as it would have been at once (a broadcast-only
// bgtask event must not turn into a stream entry, nor lose its cache).
func TestSpoolKeepsWhereAnEventGoes(t *testing.T) {
	for _, tc := range everyEvent {
		t.Run(tc.description, func(t *testing.T) {
			m, err := encodeMessage(tc.event, testAgentID, EncodingArgs)
			if err != nil {
				t.Fatal(err)
			}
			_, only := tc.event.(BroadcastOnly)
			if m.broadcastOnly != only || (m.publish != nil) != tc.event.Broadcast() {
				t.Fatalf("encoded broadcastOnly=%v publish=%v for %s", m.broadcastOnly, m.publish != nil, tc.event.Name())
			}
			wantCache := ""
			if c, ok := tc.event.(Cached); ok {
				wantCache = c.CacheID()
			}
			if m.cacheID != wantCache {
				t.Fatalf("encoded cache id %q, want %q", m.cacheID, wantCache)
			}
			back, err := unmarshalSpool(m.marshalSpool())
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(back) != fmt.Sprint(m) {
				t.Errorf("spool round trip changed %+v into %+v", m, back)
			}
		})
	}
}

func FuzzUnmarshalSpool(f *testing.F) {
	for _, tc := range everyEvent {
		m, err := encodeMessage(tc.event, testAgentID, EncodingArgs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.marshalSpool())
	}
	f.Add([]byte{spoolAnycast, 2, 4, 'n', 'a', 'm', 'e', 1, 'x', 0})
	f.Add([]byte{spoolBroadcastOnly, 2, 4, 'n', 'a', 'm', 'e', 1, 'x', 2, '{', '}'})
	f.Add([]byte{spoolCached, spoolFlagBroadcastOnly, 2, 4, 'n', 'a', 'm', 'e', 1, 'x', 2, '{', '}', 3, 'b', '.', '1'})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := unmarshalSpool(data)
		if err != nil {
			return
		}
		if again := m.marshalSpool(); !bytes.Equal(again, data) {
			// Uvarints have several encodings; the decoded message must
			// at least survive its own round trip.
			m2, err := unmarshalSpool(again)
			if err != nil || fmt.Sprint(m2) != fmt.Sprint(m) {
				t.Fatalf("round trip changed %+v into %+v (%v)", m, m2, err)
			}
		}
	})
}

// FuzzKernelTerminatedDecodes: whatever reason kernel_terminated carries,
// the manager decodes it when it is the manager's own str echoed back, or a
// KernelLifecycleEventReason member the agent chose; an agent-chosen value
// outside the enum is what the manager would drop, and the decoder says so.
func FuzzKernelTerminatedDecodes(f *testing.F) {
	f.Add("ROUTE_TERMINATION", true, -1)
	f.Add("self-terminated", false, 137)
	f.Add("oom-killed", false, 137)
	f.Fuzz(func(t *testing.T, reason string, verbatim bool, exitCode int) {
		if !utf8.ValidString(reason) {
			return // a Go string from the RPC is always valid UTF-8 (msgpack str)
		}
		ev := KernelTerminated{KernelID: kernelA, SessionID: sessionA, Reason: lifecycle.Reason(reason), ReasonVerbatim: verbatim, ExitCode: exitCode}
		packed, err := wiremsg.Marshal(ev.Args())
		if err != nil {
			t.Fatal(err)
		}
		_, err = managertest.DecodeArgs(ev.Name(), packed)
		member := lifecycle.Reason(reason).Member()
		if (verbatim || member) != (err == nil) {
			t.Fatalf("reason %q verbatim %v: decode error %v", reason, verbatim, err)
		}
	})
}

// TestBgtaskEventsAreCachedBroadcasts pins upstream's
// broadcast_event_with_cache (common/events/dispatcher.py) over
// valkey_stream/client.py's broadcast_with_cache: each bgtask_* event is
// published on events_all and the same JSON is SET under bgtask.{task_id}
// with EX 300, so the cache holds the task's last event
// (common/bgtask/bgtask.py start and _wrapper_task).
func TestBgtaskEventsAreCachedBroadcasts(t *testing.T) {
	const taskB = "3d0c5b7e-96a8-4cbe-8e1b-1f1d3f0f4a22"
	cases := []struct {
		description string
		taskID      string
		events      []Event
		wantLast    string
		wantArgs    string
	}{
		{"started then done", kernelA,
			[]Event{BgtaskUpdated{TaskID: kernelA, Message: "Task started"}, BgtaskDone{TaskID: kernelA}},
			"bgtask_done", `["` + kernelA + `",null]`},
		{"started then cancelled", taskB,
			[]Event{BgtaskUpdated{TaskID: taskB, Message: "Task started"}, BgtaskCancelled{TaskID: taskB, Message: BgtaskCancelledMessage}},
			"bgtask_cancelled", `["` + taskB + `","Task cancelled"]`},
		{"only started: the cache holds int progress", kernelA,
			[]Event{BgtaskUpdated{TaskID: kernelA, Message: "Task started"}},
			"bgtask_updated", `["` + kernelA + `",0,0,"Task started"]`},
	}
	srv := redistest.Start(t, false)
	streamDB := srv.Client(t, StreamDB)
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ctx := context.Background()
			reader := managertest.NewReader(t, srv.Addr)
			bus := newTestBus(t, srv, t.TempDir(), EncodingArgs)
			defer bus.Close()
			for _, ev := range tc.events {
				mustEmit(t, bus, ev)
			}
			last := reader.WaitBroadcast(5*time.Second, managertest.Named(tc.wantLast))
			cached, ttl, err := reader.BgtaskCache(ctx, tc.taskID)
			if err != nil {
				t.Fatal(err)
			}
			if cached.Name != tc.wantLast || ttl <= 0 || ttl > CacheTTL {
				t.Errorf("cache holds %s with TTL %v, want %s with 0 < TTL <= %v", cached.Name, ttl, tc.wantLast, CacheTTL)
			}
			if got := jsonOf(t, normalize(cached.Args)); got != tc.wantArgs || fmt.Sprint(cached.Args) != fmt.Sprint(last.Args) {
				t.Errorf("cached args %s, broadcast %v, want %s", got, last.Args, tc.wantArgs)
			}
			// Byte for byte the published message, as upstream SETs the
			// same dump_json(payload) it PUBLISHes.
			raw, err := streamDB.Get(ctx, "bgtask."+tc.taskID).Result()
			if err != nil {
				t.Fatal(err)
			}
			var published []string
			for _, ev := range tc.events {
				m, err := encodeMessage(ev, testAgentID, EncodingArgs)
				if err != nil {
					t.Fatal(err)
				}
				published = append(published, string(m.publish))
			}
			if raw != published[len(published)-1] {
				t.Errorf("cache %s\nwant the last published %s", raw, published[len(published)-1])
			}
			if evs := reader.Stream(); len(evs) != 0 {
				t.Errorf("bgtask events reached the stream: %v", managertest.Names(evs))
			}
		})
	}
}

// TestSpooledBgtaskEventStillSetsTheCache: a bgtask event queued on disk
// during an outage, replayed by a restarted bus, still sets
// bgtask.{task_id}.
func TestSpooledBgtaskEventStillSetsTheCache(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, false)
	queueDir := t.TempDir()
	bus := newTestBus(t, srv, queueDir, EncodingArgs)
	srv.Stop(t)
	mustEmit(t, bus, BgtaskUpdated{TaskID: kernelA, Message: "Task started"})
	mustEmit(t, bus, BgtaskFailed{TaskID: kernelA, Message: "pull failed"})
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	srv.StartAgain(t)
	reader := managertest.NewReader(t, srv.Addr)
	bus = newTestBus(t, srv, queueDir, EncodingArgs)
	defer bus.Close()
	reader.WaitBroadcast(10*time.Second, managertest.Named("bgtask_failed"))
	cached, ttl, err := reader.BgtaskCache(ctx, kernelA)
	if err != nil {
		t.Fatal(err)
	}
	if cached.Name != "bgtask_failed" || cached.Str(1) != "pull failed" || ttl <= 0 || ttl > CacheTTL {
		t.Errorf("cache after replay: %s %v TTL %v", cached.Name, cached.Args, ttl)
	}
}

// TestSpoolRecordVersions: records of every version read back (those an
// earlier build left on disk included), and a cached record keeps its
// cache id.
func TestSpoolRecordVersions(t *testing.T) {
	field := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	record := func(head []byte, parts ...[]byte) []byte {
		out := append([]byte(nil), head...)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	fields := record([]byte{2}, field("name"), field("x"))
	cases := []struct {
		description string
		data        []byte
		want        message
		wantErr     bool
	}{
		{"version 1: anycast without broadcast", record([]byte{spoolAnycast}, fields, []byte{0}),
			message{name: "x", fields: []string{"name", "x"}}, false},
		{"version 1: anycast and broadcast", record([]byte{spoolAnycast}, fields, field("{}")),
			message{name: "x", fields: []string{"name", "x"}, publish: []byte("{}")}, false},
		{"version 2: broadcast-only (bgtask before the cache)", record([]byte{spoolBroadcastOnly}, fields, field("{}")),
			message{name: "x", fields: []string{"name", "x"}, publish: []byte("{}"), broadcastOnly: true}, false},
		{"version 3: cached broadcast-only", record([]byte{spoolCached, spoolFlagBroadcastOnly}, fields, field("{}"), field("bgtask.1")),
			message{name: "x", fields: []string{"name", "x"}, publish: []byte("{}"), broadcastOnly: true, cacheID: "bgtask.1"}, false},
		{"version 3: cached anycast and broadcast", record([]byte{spoolCached, 0}, fields, field("{}"), field("c.1")),
			message{name: "x", fields: []string{"name", "x"}, publish: []byte("{}"), cacheID: "c.1"}, false},
		{"version 3 without a cache id", record([]byte{spoolCached, 1}, fields, field("{}"), []byte{0}), message{}, true},
		{"version 3 without a broadcast", record([]byte{spoolCached, 0}, fields, []byte{0}, field("c.1")), message{}, true},
		{"version 3 with unknown flags", record([]byte{spoolCached, 4}, fields, field("{}"), field("c.1")), message{}, true},
		{"version 3 cut before the cache id", record([]byte{spoolCached, 1}, fields, field("{}")), message{}, true},
		{"unknown version", record([]byte{9}, fields, []byte{0}), message{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := unmarshalSpool(tc.data)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if again := got.marshalSpool(); !bytes.Equal(again, tc.data) {
				t.Errorf("written back as %v, want %v", again, tc.data)
			}
		})
	}
}
