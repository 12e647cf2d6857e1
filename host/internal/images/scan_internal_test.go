package images

import "testing"

// kernelImage follows scan_images in agent/docker/agent.py (26.8.1).
func TestKernelImage(t *testing.T) {
	spec := map[string]string{"ai.backend.kernelspec": "1"}
	for _, tc := range []struct {
		description string
		repoTag     string
		labels      map[string]string
		want        bool
	}{
		{"kernelspec 1", "cr.backend.ai/stable/python:3.9-ubuntu20.04", spec, true},
		{"labels without kernelspec count as kernelspec 1", "python:3.11", map[string]string{"maintainer": "x"}, true},
		{"an empty label set is kept, as upstream (only None is skipped)", "python:3.11", map[string]string{}, true},
		{"no labels at all", "python:3.11", nil, false},
		{"kernelspec out of range", "python:3.11", map[string]string{"ai.backend.kernelspec": "2"}, false},
		{"kernelspec not an integer", "python:3.11", map[string]string{"ai.backend.kernelspec": "one"}, false},
		{"kernelspec with spaces, as Python's int() reads it", "python:3.11", map[string]string{"ai.backend.kernelspec": " 1 "}, true},
		{"registry with a port", "localhost:5000/lablup/python:3.11", spec, true},
		{"untagged", "<none>:<none>", spec, false},
		{"tag ending in a hyphen", "python:3.11-", spec, false},
		{"tag starting with a dot", "python:.3", spec, false},
		{"empty name", "registry.local/:1.0", spec, false},
		{"URL scheme", "http://registry.local/python:1.0", spec, false},
		{"leading double slash", "//python:1.0", spec, false},
	} {
		t.Run(tc.description, func(t *testing.T) {
			if got := kernelImage(tc.repoTag, tc.labels); got != tc.want {
				t.Fatalf("kernelImage(%q, %v) = %v, want %v", tc.repoTag, tc.labels, got, tc.want)
			}
		})
	}
}

// archName is arch_name_aliases (common/arch.py) with from_inspect_result's
// x86_64 default (common/data/image/types.py).
func TestArchName(t *testing.T) {
	for _, tc := range []struct{ description, docker, want string }{
		{"Docker's amd64", "amd64", "x86_64"},
		{"Docker's arm64", "arm64", "aarch64"},
		{"no architecture in the config", "", "x86_64"},
		{"i686", "i686", "x86"},
		{"others as they are", "ppc64le", "ppc64le"},
	} {
		t.Run(tc.description, func(t *testing.T) {
			if got := archName(tc.docker); got != tc.want {
				t.Errorf("archName(%q) = %q, want %q", tc.docker, got, tc.want)
			}
		})
	}
}
