package kernel

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/baiagent/baiagent/proto/sdk"
)

func TestMergeSpecs(t *testing.T) {
	merged, err := mergeSpecs([]pluginSpec{
		{Plugin: "cuda", Spec: sdk.ContainerSpec{
			Env:            map[string]string{"CUDA_VISIBLE_DEVICES": "0"},
			Devices:        []sdk.DeviceNode{{HostPath: "/dev/nvidia0"}, {HostPath: "/dev/nvidiactl", ContainerPath: "/dev/nvidiactl", CgroupPermissions: "rw"}},
			CDIDevices:     []string{"nvidia.com/gpu=0"},
			DeviceRequests: []sdk.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-1"}, Capabilities: [][]string{{"gpu"}}}},
			GroupAdd:       []string{"44", "video"},
			Mounts:         []sdk.Mount{{Source: "/host/lib", Target: "/opt/lib", ReadOnly: true}},
			ResourceData:   map[string]string{"CUDA_GLOBAL_DEVICE_IDS": "0:0"},
			Runtime:        "nvidia",
		}},
		{Plugin: "cpu", Spec: sdk.ContainerSpec{CpusetCpus: "0,1", MemoryBytes: 1 << 30, MemorySwapBytes: 1 << 30, GroupAdd: []string{"44"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDevices := []container.DeviceMapping{
		{PathOnHost: "/dev/nvidia0", PathInContainer: "/dev/nvidia0", CgroupPermissions: "rwm"},
		{PathOnHost: "/dev/nvidiactl", PathInContainer: "/dev/nvidiactl", CgroupPermissions: "rw"},
	}
	if !reflect.DeepEqual(merged.Devices, wantDevices) {
		t.Errorf("devices %+v", merged.Devices)
	}
	if len(merged.DeviceRequests) != 2 || merged.DeviceRequests[1].Driver != "cdi" ||
		!reflect.DeepEqual(merged.DeviceRequests[1].DeviceIDs, []string{"nvidia.com/gpu=0"}) {
		t.Errorf("device requests %+v", merged.DeviceRequests)
	}
	if merged.CpusetCpus != "0,1" || merged.MemoryBytes != 1<<30 || merged.MemorySwap != 1<<30 || merged.Runtime != "nvidia" {
		t.Errorf("scalars: %+v", merged)
	}
	if !reflect.DeepEqual(merged.GroupAdd, []string{"44", "video"}) || groupIDs(merged.GroupAdd) != "44" {
		t.Errorf("groups %v", merged.GroupAdd)
	}
	if merged.Env["CUDA_VISIBLE_DEVICES"] != "0" || merged.ResourceData["CUDA_GLOBAL_DEVICE_IDS"] != "0:0" || len(merged.Mounts) != 1 {
		t.Errorf("env/data/mounts: %+v", merged)
	}

	swapless, err := mergeSpecs([]pluginSpec{{Plugin: "cpu", Spec: sdk.ContainerSpec{MemoryBytes: 512}}})
	if err != nil || swapless.MemorySwap != 512 {
		t.Errorf("memory swap defaults to memory: %+v, %v", swapless, err)
	}

	conflicts := [][]pluginSpec{
		{{Plugin: "a", Spec: sdk.ContainerSpec{CpusetCpus: "0"}}, {Plugin: "b", Spec: sdk.ContainerSpec{CpusetCpus: "1"}}},
		{{Plugin: "a", Spec: sdk.ContainerSpec{Env: map[string]string{"X": "1"}}}, {Plugin: "b", Spec: sdk.ContainerSpec{Env: map[string]string{"X": "2"}}}},
		{{Plugin: "a", Spec: sdk.ContainerSpec{ResourceData: map[string]string{"A_SHARES": "0:1"}}}},
	}
	for i, specs := range conflicts {
		if _, err := mergeSpecs(specs); err == nil {
			t.Errorf("conflict %d merged", i)
		}
	}
}

// TestServicePortsLabel pins upstream's parse_service_ports
// (src/ai/backend/common/service_ports.py, 26.8.1).
func TestServicePortsLabel(t *testing.T) {
	cases := []struct {
		name, label, endpoints string
		want                   []ServicePort
		wantErr                string
	}{
		{name: "empty label", label: ""},
		{name: "single and list entries", label: "jupyter:http:8080,vscode:http:[8180,8181]",
			want: []ServicePort{{Name: "jupyter", Protocol: "http", Ports: []int{8080}}, {Name: "vscode", Protocol: "http", Ports: []int{8180, 8181}}}},
		{name: "every accepted protocol", label: "a:tcp:3001,b:http:3002,c:preopen:3003,d:vnc:3004,e:rdp:3005",
			want: []ServicePort{{Name: "a", Protocol: "tcp", Ports: []int{3001}}, {Name: "b", Protocol: "http", Ports: []int{3002}},
				{Name: "c", Protocol: "preopen", Ports: []int{3003}}, {Name: "d", Protocol: "vnc", Ports: []int{3004}}, {Name: "e", Protocol: "rdp", Ports: []int{3005}}}},
		{name: "pty entries skipped", label: "term:pty:3000,web:http:8080", want: []ServicePort{{Name: "web", Protocol: "http", Ports: []int{8080}}}},
		{name: "pty entry skipped before its ports are checked", label: "term:pty:22", want: nil},
		{name: "trailing comma accepted as upstream", label: "web:http:8080,", want: []ServicePort{{Name: "web", Protocol: "http", Ports: []int{8080}}}},
		{name: "name with underscore and dash", label: "my_app-1:http:8080", want: []ServicePort{{Name: "my_app-1", Protocol: "http", Ports: []int{8080}}}},
		{name: "endpoint-ports marks inference", label: "web:http:8080,api:http:8000", endpoints: "api,other",
			want: []ServicePort{{Name: "web", Protocol: "http", Ports: []int{8080}}, {Name: "api", Protocol: "http", Ports: []int{8000}, IsInference: true}}},
		{name: "unknown protocol refused", label: "a:ssh:8080", wantErr: "unsupported service port protocol: ssh"},
		{name: "upper-case protocol refused", label: "a:HTTP:8080", wantErr: "unsupported service port protocol"},
		{name: "port 1024 refused", label: "a:http:1024", wantErr: "larger than 1024"},
		{name: "port 1025 accepted", label: "a:http:1025", want: []ServicePort{{Name: "a", Protocol: "http", Ports: []int{1025}}}},
		{name: "port 65535 refused", label: "a:http:65535", wantErr: "smaller than 65535"},
		{name: "port 65534 accepted", label: "a:http:65534", want: []ServicePort{{Name: "a", Protocol: "http", Ports: []int{65534}}}},
		{name: "huge port refused", label: "a:http:99999999999999999999999", wantErr: "smaller than 65535"},
		{name: "runner port 2000 refused", label: "a:http:2000", wantErr: "reserved for internal use"},
		{name: "runner port 2003 refused", label: "a:tcp:[3000,2003]", wantErr: "reserved for internal use"},
		{name: "port 2004 accepted", label: "a:tcp:2004", want: []ServicePort{{Name: "a", Protocol: "tcp", Ports: []int{2004}}}},
		{name: "sshd port 2200 refused", label: "myssh:tcp:2200", wantErr: "reserved for internal use"},
		{name: "ttyd port 7681 refused", label: "term:http:7681", wantErr: "reserved for internal use"},
		{name: "port used twice across entries", label: "a:http:8080,b:tcp:8080", wantErr: "already used"},
		{name: "port used twice in one entry", label: "a:http:[8080,8080]", wantErr: "already used"},
		{name: "name listed twice (ours, not upstream)", label: "a:http:8080,a:tcp:8081", wantErr: "listed twice"},
		{name: "space after comma refused as upstream", label: "a:http:8080, b:http:8081", wantErr: "invalid service-ports format"},
		{name: "missing port", label: "x", wantErr: "invalid service-ports format"},
		{name: "unclosed list", label: "a:http:[8080,", wantErr: "invalid service-ports format"},
		{name: "dot in name refused as upstream", label: "a.b:http:8080", wantErr: "invalid service-ports format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseServicePorts(tc.label, tc.endpoints)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	ports, _ := ParseServicePorts("jupyter:http:8080,vscode:http:[8180,8181]", "")
	if got := FormatServicePorts(ports); got != "jupyter:http:8080,vscode:http:[8180,8181]" {
		t.Fatalf("format %q", got)
	}
}

// TestPreopenServicePorts pins upstream's preopen handling in create_kernel
// (src/ai/backend/agent/agent.py, 26.8.1) and docker/agent.py's label.
func TestPreopenServicePorts(t *testing.T) {
	cases := []struct {
		name    string
		ports   []int
		label   string
		wantErr error
	}{
		{name: "none", ports: nil, label: ""},
		{name: "named by the port number", ports: []int{8080, 9000}, label: "8080:preopen:8080,9000:preopen:9000"},
		{name: "runner port 2000 reserved", ports: []int{2000}, wantErr: ErrReservedPort},
		{name: "runner port 2003 reserved", ports: []int{8080, 2003}, wantErr: ErrReservedPort},
		{name: "sshd port conflicts", ports: []int{2200}, wantErr: ErrPortConflict},
		{name: "ttyd port conflicts", ports: []int{7681}, wantErr: ErrPortConflict},
		{name: "a port given twice conflicts", ports: []int{8080, 8080}, wantErr: ErrPortConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PreopenServicePorts(tc.ports)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || FormatServicePorts(got) != tc.label {
				t.Fatalf("got %q, %v; want %q", FormatServicePorts(got), err, tc.label)
			}
		})
	}
}

func TestContainerName(t *testing.T) {
	cases := map[[2]string]string{
		{"cr.backend.ai/stable/python:3.9-ubuntu20.04", "abc"}: "kernel.python.abc",
		{"baiagent-test/busybox:latest", "k-1"}:                "kernel.busybox.k-1",
		{"img@sha256:deadbeef", "k"}:                           "kernel.img.k",
		{"weird name/ünï:1", "id with space"}:                  "kernel.n.id-with-space",
	}
	for in, want := range cases {
		if got := ContainerName(in[0], in[1]); got != want {
			t.Errorf("ContainerName(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

// FuzzParseServicePorts: the label comes from an image anyone can build.
func FuzzParseServicePorts(f *testing.F) {
	f.Add("jupyter:http:8080,vscode:http:[8180,8181]", "vscode")
	f.Add("a:tcp:[1,2,3],b:pty:7681", "")
	f.Add("a:preopen:3000,b:rdp:[5000,5001],", "a,b")
	f.Fuzz(func(t *testing.T, label, endpoints string) {
		ports, err := ParseServicePorts(label, endpoints)
		if err != nil {
			return
		}
		again, err := ParseServicePorts(FormatServicePorts(ports), endpoints)
		if err != nil || !reflect.DeepEqual(again, ports) {
			t.Fatalf("round trip of %q: %+v, %v", label, again, err)
		}
		for _, sp := range ports {
			if strings.ContainsAny(sp.Name, ":,[]") || len(sp.Ports) == 0 || !slices.Contains(ServicePortProtocols, sp.Protocol) {
				t.Fatalf("accepted entry %+v", sp)
			}
			for _, p := range sp.Ports {
				if p <= 1024 || p >= 65535 || IsReservedServicePort(p) {
					t.Fatalf("accepted port %d in %+v", p, sp)
				}
			}
		}
	})
}

func TestMergeSpecsHooksNetworksSyscalls(t *testing.T) {
	tests := []struct {
		description  string
		specs        []pluginSpec
		wantPreload  string
		wantNetworks []pluginNetwork
		wantSyscalls []string
		wantErr      string
	}{
		{
			description: "hooks of two plugins mount under /opt/kernel, preloaded in plugin order",
			specs: []pluginSpec{
				{Plugin: "rocm", Spec: sdk.ContainerSpec{Hooks: []string{"/usr/lib/baiagent/librocmhook.so"}}},
				{Plugin: "cuda", Spec: sdk.ContainerSpec{Hooks: []string{"/usr/lib/baiagent/libcudahook.so"}}},
			},
			wantPreload: "/opt/kernel/libcudahook.so:/opt/kernel/librocmhook.so",
		},
		{
			description: "the same hook from two plugins is mounted once",
			specs: []pluginSpec{
				{Plugin: "a", Spec: sdk.ContainerSpec{Hooks: []string{"/lib/hook.so"}}},
				{Plugin: "b", Spec: sdk.ContainerSpec{Hooks: []string{"/lib/./hook.so"}}},
			},
			wantPreload: "/opt/kernel/hook.so",
		},
		{
			description: "two hooks with one base name conflict",
			specs: []pluginSpec{
				{Plugin: "a", Spec: sdk.ContainerSpec{Hooks: []string{"/a/hook.so"}}},
				{Plugin: "b", Spec: sdk.ContainerSpec{Hooks: []string{"/b/hook.so"}}},
			},
			wantErr: "plugins a and b both have a hook named hook.so",
		},
		{
			description: "a relative hook path is refused",
			specs:       []pluginSpec{{Plugin: "a", Spec: sdk.ContainerSpec{Hooks: []string{"hook.so"}}}},
			wantErr:     `plugin a: hook "hook.so" is not an absolute host path`,
		},
		{
			description: "networks are joined once each, named with the first plugin",
			specs: []pluginSpec{
				{Plugin: "b", Spec: sdk.ContainerSpec{DockerNetworks: []string{"fabric", "storage"}}},
				{Plugin: "a", Spec: sdk.ContainerSpec{DockerNetworks: []string{"fabric"}}},
			},
			wantNetworks: []pluginNetwork{{Plugin: "a", Name: "fabric"}, {Plugin: "b", Name: "storage"}},
		},
		{
			description: "allowed syscalls of all plugins, sorted, each once",
			specs: []pluginSpec{
				{Plugin: "a", Spec: sdk.ContainerSpec{AllowedSyscalls: []string{"perf_event_open", "kcmp"}}},
				{Plugin: "b", Spec: sdk.ContainerSpec{AllowedSyscalls: []string{"kcmp"}}},
			},
			wantSyscalls: []string{"kcmp", "perf_event_open"},
		},
		{
			description: "a syscall name that is not one is refused",
			specs:       []pluginSpec{{Plugin: "a", Spec: sdk.ContainerSpec{AllowedSyscalls: []string{"kcmp; rm"}}}},
			wantErr:     `plugin a: allowed syscall "kcmp; rm" is not a syscall name`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			merged, err := mergeSpecs(tc.specs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := merged.preload(); got != tc.wantPreload {
				t.Errorf("LD_PRELOAD %q, want %q", got, tc.wantPreload)
			}
			if !reflect.DeepEqual(merged.Networks, tc.wantNetworks) {
				t.Errorf("networks %+v, want %+v", merged.Networks, tc.wantNetworks)
			}
			if !reflect.DeepEqual(merged.AllowedSyscalls, tc.wantSyscalls) {
				t.Errorf("allowed syscalls %v, want %v", merged.AllowedSyscalls, tc.wantSyscalls)
			}
			// The profile is Docker's default plus one rule with exactly
			// these names; without any, the engine's own default applies.
			if (merged.SeccompProfile != "") != (len(tc.wantSyscalls) > 0) {
				t.Errorf("seccomp profile set: %v", merged.SeccompProfile != "")
			}
			if len(tc.wantSyscalls) > 0 {
				var profile struct {
					DefaultAction string `json:"defaultAction"`
					Syscalls      []struct {
						Names  []string `json:"names"`
						Action string   `json:"action"`
					} `json:"syscalls"`
				}
				if err := json.Unmarshal([]byte(merged.SeccompProfile), &profile); err != nil {
					t.Fatal(err)
				}
				last := profile.Syscalls[len(profile.Syscalls)-1]
				if profile.DefaultAction != "SCMP_ACT_ERRNO" || len(profile.Syscalls) < 10 ||
					!reflect.DeepEqual(last.Names, tc.wantSyscalls) || last.Action != "SCMP_ACT_ALLOW" {
					t.Errorf("profile: default %s, %d rules, last %+v", profile.DefaultAction, len(profile.Syscalls), last)
				}
			}
		})
	}
}

func TestWithIntrinsicServicePorts(t *testing.T) {
	cases := []struct {
		description string
		label       string
		want        string
	}{
		{description: "no service ports: sshd alone", label: "", want: "sshd:tcp:2200"},
		{description: "sshd comes first, as upstream orders intrinsic ports", label: "jupyter:http:8080", want: "sshd:tcp:2200,jupyter:http:8080"},
		{description: "an image's own sshd wins", label: "jupyter:http:8080,sshd:tcp:2222", want: "jupyter:http:8080,sshd:tcp:2222"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			ports, err := ParseServicePorts(tc.label, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := FormatServicePorts(WithIntrinsicServicePorts(ports)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAttachedDevicesByKind: attached devices are keyed by device kind,
// the key of resource_spec.allocations, as upstream's create_kernel builds
// attached_devices per allocation key (agent/agent.py), never by the
// plugin's name.
func TestAttachedDevicesByKind(t *testing.T) {
	gpu0 := sdk.AttachedDevice{DeviceID: "0", ModelName: "A100"}
	gpu1 := sdk.AttachedDevice{DeviceID: "1", ModelName: "A100"}
	cases := []struct {
		description string
		specs       []pluginSpec
		want        map[string][]sdk.AttachedDevice
	}{
		{"a plugin named apart from its kind",
			[]pluginSpec{{Plugin: "nvidia", Kinds: []string{"cuda"}, DeviceKinds: map[string]string{"0": "cuda", "1": "cuda"},
				Spec: sdk.ContainerSpec{AttachedDevices: []sdk.AttachedDevice{gpu0, gpu1}}}},
			map[string][]sdk.AttachedDevice{"cuda": {gpu0, gpu1}}},
		{"a plugin with two kinds: each device under the kind it is allocated in",
			[]pluginSpec{{Plugin: "multi", Kinds: []string{"a", "b"}, DeviceKinds: map[string]string{"0": "a", "1": "b"},
				Spec: sdk.ContainerSpec{AttachedDevices: []sdk.AttachedDevice{gpu0, gpu1}}}},
			map[string][]sdk.AttachedDevice{"a": {gpu0}, "b": {gpu1}}},
		{"a device the allocation does not name goes to the first kind",
			[]pluginSpec{{Plugin: "multi", Kinds: []string{"a", "b"}, DeviceKinds: map[string]string{"1": "b"},
				Spec: sdk.ContainerSpec{AttachedDevices: []sdk.AttachedDevice{gpu0, gpu1}}}},
			map[string][]sdk.AttachedDevice{"a": {gpu0}, "b": {gpu1}}},
		{"no attached devices: no entry",
			[]pluginSpec{{Plugin: "cpu", Kinds: []string{"cpu", "mem"}, Spec: sdk.ContainerSpec{CpusetCpus: "0"}}},
			map[string][]sdk.AttachedDevice{}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			merged, err := mergeSpecs(tc.specs)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(merged.Attached, tc.want) {
				t.Errorf("attached %+v, want %+v", merged.Attached, tc.want)
			}
		})
	}
}
