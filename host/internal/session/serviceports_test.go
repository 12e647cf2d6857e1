package session

import (
	"reflect"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// TestServicePortsWire: the service ports of create_kernels' reply (and
// so of kernel_started, which carries the same creation info) as
// upstream's create_kernel leaves them after merging get-apps
// (agent/agent.py; kernel/service.py get_apps, 26.8.1): url_template,
// allowed_arguments and allowed_envs only where the definition sets them.
func TestServicePortsWire(t *testing.T) {
	cases := []struct {
		description string
		port        scratch.ServicePort
		want        map[string]any
	}{
		{description: "a port without an app definition has no get-apps keys",
			port: scratch.ServicePort{Name: "sshd", Protocol: "tcp", ContainerPorts: []int{2200}, HostPorts: []int{30000}},
			want: map[string]any{"name": "sshd", "protocol": "tcp", "container_ports": []any{int64(2200)},
				"host_ports": []any{int64(30000)}, "is_inference": false}},
		{description: "url_template only",
			port: scratch.ServicePort{Name: "jupyter", Protocol: "http", ContainerPorts: []int{8090}, HostPorts: []int{30001},
				URLTemplate: "http://{host}:{port}/"},
			want: map[string]any{"name": "jupyter", "protocol": "http", "container_ports": []any{int64(8090)},
				"host_ports": []any{int64(30001)}, "is_inference": false, "url_template": "http://{host}:{port}/"}},
		{description: "allowed arguments and envs as lists of str",
			port: scratch.ServicePort{Name: "vscode", Protocol: "http", ContainerPorts: []int{8180}, HostPorts: []int{30002},
				AllowedArguments: []string{"--auth"}, AllowedEnvs: []string{"PASSWORD", "TOKEN"}},
			want: map[string]any{"name": "vscode", "protocol": "http", "container_ports": []any{int64(8180)},
				"host_ports": []any{int64(30002)}, "is_inference": false,
				"allowed_arguments": []any{"--auth"}, "allowed_envs": []any{"PASSWORD", "TOKEN"}}},
		{description: "an inference port keeps is_inference",
			port: scratch.ServicePort{Name: "api", Protocol: "preopen", ContainerPorts: []int{8000}, HostPorts: []int{30003}, IsInference: true},
			want: map[string]any{"name": "api", "protocol": "preopen", "container_ports": []any{int64(8000)},
				"host_ports": []any{int64(30003)}, "is_inference": true}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got := sessionapi.ServicePortDicts(servicePorts([]scratch.ServicePort{tc.port}))
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// TestCreationResultCarriesApps: the creation info (create_kernels'
// element and kernel_started's body) takes the kernel's merged ports.
func TestCreationResultCarriesApps(t *testing.T) {
	svc := New(nil, Options{KernelHost: "127.0.0.1"})
	created := kernel.Created{ServicePorts: []scratch.ServicePort{{Name: "jupyter", Protocol: "http",
		ContainerPorts: []int{8090}, HostPorts: []int{30001}, URLTemplate: "http://{host}:{port}/"}}}
	res := svc.creationResult(pending{req: kernel.CreateRequest{KernelID: "k"}}, created)
	sp := res["service_ports"].([]any)
	if len(sp) != 1 || sp[0].(map[string]any)["url_template"] != "http://{host}:{port}/" || sp[0].(map[string]any)["protocol"] != "http" {
		t.Errorf("service_ports %#v", sp)
	}
}
