package scratch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestResourceFileRoundTrip(t *testing.T) {
	root := t.TempDir()
	d, err := Create(root, "k1", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(root, "k1", -1, -1); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	alloc := map[string]map[string]map[string]decimal.Decimal{
		"cpu":  {"cpu": {"0": dec("1"), "10": dec("1"), "2": dec("1")}},
		"mem":  {"mem": {"root": dec("4294967296")}},
		"cuda": {"cuda.shares": {"0": dec("0.5")}},
	}
	spec := ResourceSpec{
		ScratchSizeBytes: 64 << 20,
		Mounts:           []Mount{{Source: d.Config, Target: "/home/config", ReadOnly: true}, {Source: d.Work, Target: "/home/work"}},
		Slots:            map[string]decimal.Decimal{"cpu": dec("3"), "mem": dec("4294967296"), "cuda.shares": dec("0.5")},
		Allocation:       alloc,
		BytesSlots:       map[string]bool{"mem": true},
		PluginData:       map[string]string{"CUDA_GLOBAL_DEVICE_IDS": "0:0"},
	}
	if err := WriteResourceFile(d, spec); err != nil {
		t.Fatal(err)
	}
	if err := AppendContainerID(d, "abc123"); err != nil {
		t.Fatal(err)
	}
	data, err := ReadResourceFile(d)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SCRATCH_SIZE": "64m", "UNIFIED_DEVICES": "[]", "CID": "abc123", "CUDA_GLOBAL_DEVICE_IDS": "0:0",
		"MOUNTS":             d.Config + ":/home/config:ro," + d.Work + ":/home/work:rw",
		"SLOTS":              `{"cpu":"3","cuda.shares":"0.5","mem":"4294967296"}`,
		"CPU_SHARES":         "0:1,2:1,10:1",
		"MEM_SHARES":         "root:4g",
		"CUDA.SHARES_SHARES": "0:0.5",
	}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("resource.txt\n got %v\nwant %v", data, want)
	}
	back, err := sdk.AllocationFromResourceData(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !back["mem"]["root"].Equal(dec("4294967296")) || !back["cpu"]["10"].Equal(dec("1")) || !back["cuda.shares"]["0"].Equal(dec("0.5")) {
		t.Fatalf("allocation read back %v", back)
	}
	spec.PluginData = map[string]string{"X_SHARES": "0:1"}
	if err := WriteResourceFile(d, spec); err == nil {
		t.Fatal("a plugin key ending in _SHARES was written")
	}
	if err := Remove(root, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Base); !os.IsNotExist(err) {
		t.Fatalf("scratch dir left: %v", err)
	}
}

func TestForRefusesPathTricks(t *testing.T) {
	for _, id := range []string{"", ".", "..", "../x", "a/b", ".hidden"} {
		if _, err := For("/scratch", id); err == nil {
			t.Errorf("kernel id %q accepted", id)
		}
	}
}

func TestEnviron(t *testing.T) {
	d, err := Create(t.TempDir(), "k", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteEnviron(d, map[string]string{"B": "2", "A": "x=y"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(d.Config, EnvironFile))
	if string(raw) != "A=x=y\nB=2\n" {
		t.Fatalf("environ.txt %q", raw)
	}
	if err := WriteEnviron(d, map[string]string{"A": "two\nlines"}); err == nil {
		t.Fatal("a multi-line value was written")
	}
}

func sampleRecovery() Recovery {
	return Recovery{
		Version: RecoveryVersion, AgentID: "a1", KernelID: "k1", SessionID: "s1", Image: "img:1",
		RuntimeType: "python", RuntimePath: "/usr/bin/python3", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		ReplInPort: 30000, ReplOutPort: 30001,
		ServicePorts: []ServicePort{{Name: "jupyter", Protocol: "http", ContainerPorts: []int{8080}, HostPorts: []int{30002}}},
	}
}

func TestRecoveryRoundTrip(t *testing.T) {
	d, err := Create(t.TempDir(), "k1", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecovery()
	if err := WriteRecovery(d, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecovery(d)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v\nwant %+v", got, r)
	}
	if ports := got.HostPorts(); !reflect.DeepEqual(ports, []int{30000, 30001, 30002}) {
		t.Fatalf("host ports %v", ports)
	}
	for name, raw := range map[string]string{
		"unknown field":   `{"version":1,"kernel_id":"k","repl_in_port":1,"repl_out_port":2,"extra":1}`,
		"newer version":   `{"version":2,"kernel_id":"k","repl_in_port":1,"repl_out_port":2}`,
		"bad kernel id":   `{"version":1,"kernel_id":"../x","repl_in_port":1,"repl_out_port":2}`,
		"port range":      `{"version":1,"kernel_id":"k","repl_in_port":0,"repl_out_port":2}`,
		"ports mismatch":  `{"version":1,"kernel_id":"k","repl_in_port":1,"repl_out_port":2,"service_ports":[{"name":"a","container_ports":[1],"host_ports":[]}]}`,
		"trailing object": `{"version":1,"kernel_id":"k","repl_in_port":1,"repl_out_port":2} {}`,
		"not json":        `version=1`,
	} {
		if _, err := DecodeRecovery([]byte(raw)); err == nil {
			t.Errorf("%s: accepted %s", name, raw)
		}
	}
	if _, err := DecodeRecovery([]byte(strings.Repeat(" ", maxRecoveryFile+1))); err == nil {
		t.Error("an oversized file was accepted")
	}
}

// FuzzDecodeRecovery: recovery.json is read back from disk after a crash;
// whatever it holds, decoding must not panic, and what it accepts must be
// valid and survive a write/read round trip.
func FuzzDecodeRecovery(f *testing.F) {
	f.Add([]byte(`{"version":1,"agent_id":"a","kernel_id":"k","repl_in_port":1,"repl_out_port":2,"service_ports":[{"name":"s","protocol":"tcp","container_ports":[80],"host_ports":[3000]}]}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := DecodeRecovery(raw)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded an invalid record: %v", err)
		}
		d, err := Create(t.TempDir(), r.KernelID, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteRecovery(d, r); err != nil {
			t.Fatalf("cannot write back what was read: %v", err)
		}
		back, err := ReadRecovery(d)
		if err != nil || !reflect.DeepEqual(back.HostPorts(), r.HostPorts()) || back.KernelID != r.KernelID {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}
