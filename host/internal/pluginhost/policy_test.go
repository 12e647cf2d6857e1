package pluginhost

import "testing"

// TestPolicyMatchesDottedSegments pins upstream's match_plugin_list
// (src/ai/backend/plugin/entrypoint.py, 26.8.1): an item matches a module
// path only as the whole path or a package above it.
func TestPolicyMatchesDottedSegments(t *testing.T) {
	cases := []struct {
		description string
		policy      Policy
		plugin      string
		want        State
	}{
		{"our name blocks", Policy{Block: []string{"cuda"}}, "cuda", StateBlocked},
		{"the accelerator package blocks cuda", Policy{Block: []string{"ai.backend.accelerator"}}, "cuda", StateBlocked},
		{"the accelerator package blocks rocm", Policy{Block: []string{"ai.backend.accelerator"}}, "rocm", StateBlocked},
		{"a partial segment blocks nothing", Policy{Block: []string{"ai.backend.acc"}}, "cuda", StateRunning},
		{"a partial segment blocks not tpu either", Policy{Block: []string{"ai.backend.acc"}}, "tpu", StateRunning},
		{"cuda_open's package blocks cuda", Policy{Block: []string{"ai.backend.accelerator.cuda_open"}}, "cuda", StateBlocked},
		{"the full module path blocks", Policy{Block: []string{"ai.backend.accelerator.cuda_open.plugin"}}, "cuda", StateBlocked},
		{"cuda's package is not a prefix of cuda_open", Policy{Allow: []string{"ai.backend.accelerator.cud"}}, "cuda", StateNotAllowed},
		{"the package allows", Policy{Allow: []string{"ai.backend.accelerator.rocm"}}, "rocm", StateRunning},
		{"the intrinsic plugin is never blocked", Policy{Block: []string{"ai.backend.agent"}}, "cpu", StateRunning},
		{"an empty allow list allows nothing else", Policy{Allow: []string{}}, "cuda", StateNotAllowed},
		{"a name is not a prefix match", Policy{Block: []string{"cud"}}, "cuda", StateRunning},
	}
	for _, tc := range cases {
		got, reason := tc.policy.Decide(tc.plugin)
		if got != tc.want {
			t.Errorf("%s: Decide(%q) = %v (%s), want %v", tc.description, tc.plugin, got, reason, tc.want)
		}
	}
}
