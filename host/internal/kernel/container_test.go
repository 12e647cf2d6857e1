package kernel

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

func decodeJSON(t testing.TB, text string) map[string]any {
	t.Helper()
	m, err := parseContainerOpts([]byte(text))
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	return m
}

// mergeNested is upstream's update_nested_dict (agent/utils.py).
func TestMergeNested(t *testing.T) {
	cases := []struct {
		description string
		dst, add    string
		want        string
		wantErr     string
	}{
		{description: "new keys are added", dst: `{"a":1}`, add: `{"b":2}`, want: `{"a":1,"b":2}`},
		{description: "scalars are overwritten", dst: `{"a":1}`, add: `{"a":"x"}`, want: `{"a":"x"}`},
		{description: "objects merge recursively", dst: `{"HostConfig":{"Init":true,"ShmSize":1}}`, add: `{"HostConfig":{"ShmSize":2,"Privileged":false}}`,
			want: `{"HostConfig":{"Init":true,"Privileged":false,"ShmSize":2}}`},
		{description: "lists are extended", dst: `{"HostConfig":{"CapAdd":["IPC_LOCK"]}}`, add: `{"HostConfig":{"CapAdd":["SYS_PTRACE"]}}`,
			want: `{"HostConfig":{"CapAdd":["IPC_LOCK","SYS_PTRACE"]}}`},
		{description: "null is overwritten by a list", dst: `{"Dns":null}`, add: `{"Dns":["1.1.1.1"]}`, want: `{"Dns":["1.1.1.1"]}`},
		{description: "a scalar may become an object", dst: `{"a":1}`, add: `{"a":{"b":1}}`, want: `{"a":{"b":1}}`},
		{description: "null replaces a scalar", dst: `{"a":1}`, add: `{"a":null}`, want: `{"a":null}`},
		{description: "an object met by a scalar is an error", dst: `{"HostConfig":{"Init":true}}`, add: `{"HostConfig":1}`, wantErr: "HostConfig: cannot merge a number into an object"},
		{description: "an object met by null is an error", dst: `{"HostConfig":{}}`, add: `{"HostConfig":null}`, wantErr: "HostConfig: cannot merge null"},
		{description: "a list met by an object is an error, named by path", dst: `{"HostConfig":{"CapAdd":[]}}`, add: `{"HostConfig":{"CapAdd":{"x":1}}}`,
			wantErr: "HostConfig.CapAdd: cannot extend a list with an object"},
		{description: "large integers stay exact", dst: `{"Memory":1}`, add: `{"Memory":9007199254740993}`, want: `{"Memory":9007199254740993}`},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			dst := decodeJSON(t, tc.dst)
			err := mergeNested(dst, decodeJSON(t, tc.add), "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v; want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(dst)
			if string(got) != tc.want {
				t.Fatalf("got %s; want %s", got, tc.want)
			}
		})
	}
}

func TestParseContainerOpts(t *testing.T) {
	cases := []struct {
		description string
		text        string
		wantErr     string
	}{
		{description: "an object", text: `{"HostConfig":{"Privileged":false}}`},
		{description: "an empty object", text: `{}`},
		{description: "an array is refused", text: `[1]`, wantErr: "want a JSON object, not an array"},
		{description: "null is refused", text: `null`, wantErr: "not null"},
		{description: "trailing data is refused", text: `{} {}`, wantErr: "trailing data"},
		{description: "broken JSON", text: `{"a":`, wantErr: "unexpected EOF"},
		{description: "empty file", text: ``, wantErr: "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			_, err := parseContainerOpts([]byte(tc.text))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v; want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// The operator's files are merged in order into the engine API's create
// body (agent/docker/agent.py, agent-docker-container-opts.json).
func TestApplyContainerOpts(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc.json")
	home := filepath.Join(dir, "home.json")
	missing := filepath.Join(dir, "missing.json")
	if err := os.WriteFile(etc, []byte(`{"HostConfig":{"CapAdd":["SYS_PTRACE"],"ShmSize":1024,"Ulimits":[{"Name":"core","Soft":0,"Hard":0}]},"Labels":{"site":"lab"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(home, []byte(`{"HostConfig":{"ShmSize":2048}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{Image: "x:1", Tty: true, Labels: map[string]string{"ai.backend.kernel-id": "k"}}
	hostCfg := &container.HostConfig{CapAdd: []string{"IPC_LOCK"}, Resources: container.Resources{Memory: 1 << 30, Ulimits: kernelUlimits()}}
	docs, names, err := readContainerOpts([]string{etc, missing, home})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{etc, home}) {
		t.Fatalf("files read %v", names)
	}
	gotCfg, gotHost, _, err := applyContainerOpts(cfg, hostCfg, nil, docs, names)
	if err != nil {
		t.Fatal(err)
	}
	if gotCfg.Image != "x:1" || !gotCfg.Tty || gotCfg.Labels["site"] != "lab" || gotCfg.Labels["ai.backend.kernel-id"] != "k" {
		t.Errorf("config %+v", gotCfg)
	}
	if !reflect.DeepEqual([]string(gotHost.CapAdd), []string{"IPC_LOCK", "SYS_PTRACE"}) || gotHost.ShmSize != 2048 || gotHost.Memory != 1<<30 {
		t.Errorf("host config CapAdd %v ShmSize %d Memory %d", gotHost.CapAdd, gotHost.ShmSize, gotHost.Memory)
	}
	if len(gotHost.Ulimits) != 3 || gotHost.Ulimits[1].Name != "memlock" || gotHost.Ulimits[2].Name != "core" {
		t.Errorf("ulimits %+v", gotHost.Ulimits)
	}

	// A bad file fails the creation, naming the file.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"HostConfig": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readContainerOpts([]string{etc, bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a broken file: %v; want an error naming %s", err, bad)
	}
	clash := filepath.Join(dir, "clash.json")
	if err := os.WriteFile(clash, []byte(`{"HostConfig": {"CapAdd": "SYS_ADMIN"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	docs, names, err = readContainerOpts([]string{clash})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := applyContainerOpts(cfg, hostCfg, nil, docs, names); err == nil || !strings.Contains(err.Error(), clash) || !strings.Contains(err.Error(), "HostConfig.CapAdd") {
		t.Errorf("a list met by a string: %v; want an error naming %s and the key", err, clash)
	}
	wrongType := filepath.Join(dir, "wrongtype.json")
	if err := os.WriteFile(wrongType, []byte(`{"HostConfig": {"ShmSize": "big"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	docs, names, _ = readContainerOpts([]string{wrongType})
	if _, _, _, err := applyContainerOpts(cfg, hostCfg, nil, docs, names); err == nil || !strings.Contains(err.Error(), wrongType) {
		t.Errorf("a value of the wrong type: %v; want an error naming %s", err, wrongType)
	}
}

// FuzzContainerOpts feeds arbitrary file contents through the extra
// container options decoder and merge: never a panic, and whatever is
// accepted decodes into a container config or fails with an error.
func FuzzContainerOpts(f *testing.F) {
	for _, seed := range []string{`{}`, `{"HostConfig":{"CapAdd":["X"],"ShmSize":1}}`, `{"Labels":{"a":"b"}}`, `[1]`, `{"HostConfig":1}`,
		`{"HostConfig":{"Ulimits":[{"Name":"core","Soft":-1,"Hard":-1}]}}`, `{"Env":["A=1"],"Tty":false}`, `{"a":1e999}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseContainerOpts(data)
		if err != nil {
			return
		}
		cfg := &container.Config{Image: "x:1", Labels: map[string]string{"k": "v"}}
		hostCfg := &container.HostConfig{CapAdd: []string{"IPC_LOCK"}, Resources: container.Resources{Ulimits: kernelUlimits()}}
		c, h, _, err := applyContainerOpts(cfg, hostCfg, nil, []map[string]any{doc}, []string{"fuzz.json"})
		if err == nil && (c == nil || h == nil) {
			t.Fatalf("accepted %q but returned a nil config", data)
		}
	})
}

// The log driver as upstream: local, 5 files of a fifth of
// [container-logs] max-length (10M by default), uncompressed.
func TestKernelLogConfig(t *testing.T) {
	cases := []struct {
		description string
		maxLength   int64
		wantSize    string
	}{
		{description: "default 10M", maxLength: 0, wantSize: "2097152"},
		{description: "configured 50M", maxLength: 50 << 20, wantSize: "10485760"},
		{description: "tiny", maxLength: 3, wantSize: "1"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			lc := kernelLogConfig(tc.maxLength)
			if lc.Type != "local" || lc.Config["max-size"] != tc.wantSize || lc.Config["max-file"] != "5" || lc.Config["compress"] != "false" {
				t.Fatalf("got %+v", lc)
			}
		})
	}
}

// agent/agent.py refuses another architecture's image before any pull.
func TestCheckArchitecture(t *testing.T) {
	node := NodeArchitecture()
	other := "aarch64"
	if node == other {
		other = "x86_64"
	}
	cases := []struct {
		description string
		arch        string
		wantErr     bool
	}{
		{description: "the node's own", arch: node},
		{description: "not given", arch: ""},
		{description: "another", arch: other, wantErr: true},
		{description: "an unknown one", arch: "riscv64x", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			err := CheckArchitecture(tc.arch)
			if tc.wantErr != errors.Is(err, ErrImageArchitectureMismatch) {
				t.Fatalf("CheckArchitecture(%q) = %v", tc.arch, err)
			}
		})
	}
	if normalizeArch("amd64") != "x86_64" || normalizeArch("arm64") != "aarch64" {
		t.Error("Docker's names are not mapped onto upstream's")
	}
}

func TestTimeMounts(t *testing.T) {
	got := timeMounts(func(p string) bool { return p == "/etc/localtime" })
	if len(got) != 1 || got[0].Source != "/etc/localtime" || got[0].Target != "/etc/localtime" || !got[0].ReadOnly {
		t.Errorf("got %+v", got)
	}
	if got := timeMounts(func(string) bool { return false }); len(got) != 0 {
		t.Errorf("no files: %+v", got)
	}
}

// get_safe_ulimit (agent/utils.py): the desired limits, lowered to the
// agent process's own.
func TestCapUlimit(t *testing.T) {
	const inf = unix.RLIM_INFINITY
	cases := []struct {
		description string
		desired     int64
		current     uint64
		want        int64
	}{
		{description: "unlimited wanted, agent unlimited", desired: -1, current: inf, want: -1},
		{description: "unlimited wanted, agent capped", desired: -1, current: 8 << 20, want: 8 << 20},
		{description: "number wanted, agent unlimited", desired: 1048576, current: inf, want: 1048576},
		{description: "number wanted, agent lower", desired: 1048576, current: 20000, want: 20000},
		{description: "number wanted, agent higher", desired: 1048576, current: 1 << 30, want: 1048576},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if got := capUlimit(tc.desired, tc.current); got != tc.want {
				t.Fatalf("got %d; want %d", got, tc.want)
			}
		})
	}
}
