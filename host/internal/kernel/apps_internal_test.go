package kernel

import (
	"reflect"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// TestMergeAppsInto follows upstream's create_kernel (agent/agent.py,
// 26.8.1): each get-apps entry updates the service port of its name, the
// label's protocol kept; apps without a port are ignored.
func TestMergeAppsInto(t *testing.T) {
	cases := []struct {
		description string
		ports       []scratch.ServicePort
		apps        []protocol.App
		want        []scratch.ServicePort
		changed     bool
	}{
		{description: "no apps leave the ports alone",
			ports: []scratch.ServicePort{{Name: "sshd", Protocol: "tcp"}},
			want:  []scratch.ServicePort{{Name: "sshd", Protocol: "tcp"}}},
		{description: "an app fills its port's template, arguments and envs",
			ports: []scratch.ServicePort{{Name: "sshd", Protocol: "tcp"}, {Name: "vscode", Protocol: "http"}},
			apps:  []protocol.App{{Name: "vscode", URLTemplate: "http://{host}/", AllowedArguments: []string{"--auth"}, AllowedEnvs: []string{"PASSWORD"}}},
			want: []scratch.ServicePort{{Name: "sshd", Protocol: "tcp"}, {Name: "vscode", Protocol: "http",
				URLTemplate: "http://{host}/", AllowedArguments: []string{"--auth"}, AllowedEnvs: []string{"PASSWORD"}}},
			changed: true},
		{description: "an app the label does not publish is ignored",
			ports: []scratch.ServicePort{{Name: "jupyter", Protocol: "http"}},
			apps:  []protocol.App{{Name: "tensorboard", URLTemplate: "x"}},
			want:  []scratch.ServicePort{{Name: "jupyter", Protocol: "http"}}},
		{description: "the label's protocol wins over anything the app says",
			ports:   []scratch.ServicePort{{Name: "desk", Protocol: "vnc"}},
			apps:    []protocol.App{{Name: "desk", URLTemplate: "vnc://{host}"}},
			want:    []scratch.ServicePort{{Name: "desk", Protocol: "vnc", URLTemplate: "vnc://{host}"}},
			changed: true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if changed := mergeAppsInto(tc.ports, tc.apps); changed != tc.changed || !reflect.DeepEqual(tc.ports, tc.want) {
				t.Errorf("got %+v (changed %v), want %+v (changed %v)", tc.ports, changed, tc.want, tc.changed)
			}
		})
	}
}
