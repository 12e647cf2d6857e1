package managertest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

const (
	kid = "8c9a6f52-3bd4-4c3c-9a4c-61d1f4f1f0a1"
	sid = "0f6b5f3e-7f44-4bbd-a3f0-2b5f0e9f7d11"
)

const metadata = `{"request_id":null,"user":null,"triggered_user":null}`

func pack(t *testing.T, args ...any) []byte {
	t.Helper()
	b, err := wiremsg.Marshal(wiremsg.Tuple(args))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func heartbeat(mut func(m wiremsg.Dict) wiremsg.Dict) wiremsg.Dict {
	m := wiremsg.Dict{
		{Key: "ip", Value: "10.0.0.1"}, {Key: "region", Value: "local"}, {Key: "scaling_group", Value: "default"},
		{Key: "addr", Value: "tcp://10.0.0.1:6001"}, {Key: "public_key", Value: nil}, {Key: "public_host", Value: "10.0.0.1"},
		{Key: "available_resource_slots", Value: wiremsg.ResourceSlot{{Name: "cpu", Amount: decimal.NewFromInt(4)}}},
		{Key: "slot_key_and_units", Value: wiremsg.Dict{{Key: "cpu", Value: wiremsg.SlotTypes("count")}}},
		{Key: "version", Value: "26.8.1"}, {Key: "compute_plugins", Value: wiremsg.Dict{{Key: "cpu", Value: wiremsg.Dict{}}}},
		{Key: "images", Value: []byte{1, 2}}, {Key: "images_opts", Value: wiremsg.Dict{{Key: "compression", Value: "zlib"}}},
		{Key: "architecture", Value: "x86_64"}, {Key: "auto_terminate_abusing_kernel", Value: false},
	}
	if mut != nil {
		m = mut(m)
	}
	return m
}

func set(key string, v any) func(wiremsg.Dict) wiremsg.Dict {
	return func(m wiremsg.Dict) wiremsg.Dict {
		out := wiremsg.Dict{}
		for _, kv := range m {
			if kv.Key == key {
				if v == "<drop>" {
					continue
				}
				kv.Value = v
			}
			out = append(out, kv)
		}
		return out
	}
}

// TestDecodeArgs pins the deserialize methods of 26.8.1's event classes
// (common/events/event_types/{agent,kernel,session,image,bgtask}) and the
// unpickling of enums (common/msgpack.py: ext 6 is pickle.loads).
func TestDecodeArgs(t *testing.T) {
	reason := wiremsg.KernelLifecycleEventReason
	cases := []struct {
		description string
		name        string
		args        []any
		wantErr     string // "" decodes
	}{
		{"terminated with an agent-chosen reason", "kernel_terminated", []any{kid, sid, reason("self-terminated"), -1}, ""},
		{"terminated with a manager reason echoed as str", "kernel_terminated", []any{kid, sid, "ROUTE_TERMINATION", -1}, ""},
		{"oom-killed is not a KernelLifecycleEventReason", "kernel_terminated", []any{kid, sid, reason("oom-killed"), 137}, "not a valid KernelLifecycleEventReason"},
		{"enum from another class", "kernel_terminated", []any{kid, sid, wiremsg.SlotTypes("count"), 0}, "want ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason"},
		{"session id not a UUID", "kernel_terminated", []any{kid, "s1", reason("user-requested"), 0}, "not a UUID"},
		{"exit code as bool", "kernel_terminated", []any{kid, sid, reason("user-requested"), true}, "want int"},
		{"one arg short", "kernel_terminated", []any{kid, sid, reason("user-requested")}, "3 args, want 4"},
		{"kernel_started with creation info", "kernel_started", []any{kid, sid, "", wiremsg.Dict{{Key: "container_id", Value: "c"}}}, ""},
		{"kernel_started without creation info dict", "kernel_started", []any{kid, sid, "", nil}, "want dict"},
		{"session_success needs the enum", "session_success", []any{sid, "task-finished", 0}, "want KernelLifecycleEventReason"},
		{"session_failure with task-timeout", "session_failure", []any{sid, reason("task-timeout"), -2}, ""},
		{"execution_started", "execution_started", []any{sid}, ""},
		{"agent_error with an unknown level", "agent_error", []any{"boom", nil, nil, wiremsg.Dict{}, "LOUD"}, "not a LogLevel"},
		{"agent_error", "agent_error", []any{"boom", "tb", nil, wiremsg.Dict{}, "ERROR"}, ""},
		{"heartbeat", "agent_heartbeat", []any{heartbeat(nil)}, ""},
		{"heartbeat with region None", "agent_heartbeat", []any{heartbeat(set("region", nil))}, "region: NoneType, want str"},
		{"heartbeat with empty public_host", "agent_heartbeat", []any{heartbeat(set("public_host", ""))}, "public_host: empty"},
		{"heartbeat without architecture", "agent_heartbeat", []any{heartbeat(set("architecture", "<drop>"))}, `"architecture" missing`},
		{"heartbeat with slot units as str", "agent_heartbeat", []any{heartbeat(set("slot_key_and_units", wiremsg.Dict{{Key: "cpu", Value: "count"}}))}, "want SlotTypes"},
		{"image_pull_finished with four args", "image_pull_finished", []any{"img", "i-a", 1.5, nil}, ""},
		{"image_pull_finished with three args", "image_pull_finished", []any{"img", "i-a", 1.5}, "want 4 to 5"},
		{"bgtask_updated with int progress", "bgtask_updated", []any{kid, 0, 0, "Task started"}, ""},
		{"bgtask_cancelled", "bgtask_cancelled", []any{kid, "Task cancelled"}, ""},
		{"installed images removed", "agent_installed_images_remove", []any{wiremsg.Dict{{Key: "r/p/i:1", Value: wiremsg.Dict{{Key: "canonical", Value: "r/p/i:1"}, {Key: "digest", Value: "sha256:ab"}}}}}, ""},
		{"installed images removed without digest", "agent_installed_images_remove", []any{wiremsg.Dict{{Key: "r/p/i:1", Value: wiremsg.Dict{{Key: "canonical", Value: "r/p/i:1"}}}}}, `"digest" missing`},
		{"do_sync_kernel_logs", "do_sync_kernel_logs", []any{kid, "c0ffee"}, ""},
		{"an event the manager does not know", "kernel_exploded", []any{kid}, "not an event"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			_, err := DecodeArgs(tc.name, pack(t, tc.args...))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want it decoded, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestEveryReasonDecodes: each member, pickled as the agent pickles it,
// unpickles; the list is 26.8.1's common/events/event_types/kernel/types.py.
func TestEveryReasonDecodes(t *testing.T) {
	if len(lifecycleReasons()) != 30 {
		t.Fatalf("26.8.1 has 30 members, the list has %d", len(lifecycleReasons()))
	}
	for _, r := range lifecycleReasons() {
		if _, err := DecodeArgs("kernel_terminated", pack(t, kid, sid, wiremsg.KernelLifecycleEventReason(r), -1)); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
}

// TestDecodeStreamEntry pins MessagePayload.from_anycast
// (common/message_queue/types.py) and which events go where.
func TestDecodeStreamEntry(t *testing.T) {
	args := string(pack(t, sid))
	cases := []struct {
		description string
		pairs       []string
		wantErr     string
	}{
		{"as upstream writes it", []string{"name", "execution_started", "source", "i-a", "args", args, "metadata", metadata}, ""},
		{"fields out of order", []string{"source", "i-a", "name", "execution_started", "args", args, "metadata", metadata}, "field 0"},
		{"no metadata", []string{"name", "execution_started", "source", "i-a", "args", args}, "3 fields"},
		{"metadata not JSON", []string{"name", "execution_started", "source", "i-a", "args", args, "metadata", "{"}, "not JSON"},
		{"a broadcast-only event in the stream", []string{"name", "bgtask_done", "source", "i-a", "args", string(pack(t, kid, nil)), "metadata", metadata}, "broadcast-only"},
		{"JSON payload instead of msgpack args", []string{"name", "execution_started", "source", "i-a", "payload", `{"session_id":"x"}`, "metadata", metadata}, `"payload", want "args"`},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ev, err := DecodeStreamEntry(tc.pairs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if ev.Name != "execution_started" || ev.Source != "i-a" || ev.Str(0) != sid {
					t.Fatalf("decoded %+v", ev)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecodeBroadcast pins MessagePayload.from_broadcast.
func TestDecodeBroadcast(t *testing.T) {
	msg := func(name string, args []byte, extra map[string]string) string {
		m := map[string]string{"name": name, "source": "i-a", "args": base64.StdEncoding.EncodeToString(args), "metadata": metadata}
		for k, v := range extra {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	term := pack(t, kid, sid, wiremsg.KernelLifecycleEventReason("user-requested"), -1)
	cases := []struct {
		description string
		payload     string
		wantErr     string
	}{
		{"kernel_terminated", msg("kernel_terminated", term, nil), ""},
		{"anycast-only event broadcast", msg("execution_started", pack(t, sid), nil), "not a broadcast event"},
		{"args not base64", msg("kernel_terminated", term, map[string]string{"args": "%%%"}), "not base64"},
		{"metadata missing", msg("kernel_terminated", term, map[string]string{"metadata": ""}), `"metadata"`},
		{"not JSON", "kernel_terminated", "not a JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ev, err := DecodeBroadcast(tc.payload)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !ev.Broadcast || ev.Reason(2) != "user-requested" || !ev.ReasonIsEnum(2) || ev.Int(3) != -1 {
					t.Fatalf("decoded %+v", ev)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzDecodeStreamEntry: the decoder never panics on arbitrary args bytes.
func FuzzDecodeStreamEntry(f *testing.F) {
	f.Add("kernel_terminated", []byte{0x94})
	f.Add("agent_heartbeat", []byte{0x91, 0x80})
	f.Fuzz(func(t *testing.T, name string, args []byte) {
		_, _ = DecodeStreamEntry([]string{"name", name, "source", "i", "args", string(args), "metadata", metadata})
	})
}
