package agent

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// The heartbeat lists local kernel images, as upstream's scan_images does
// (kernelImage has the rules).
func TestKernelImagesInHeartbeat(t *testing.T) {
	docker := kerneltest.Docker(t)
	image := kerneltest.BuildBusybox(t, docker)
	a := &Agent{docker: docker, log: zerolog.Nop()}
	var found bool
	for _, img := range a.kernelImages(context.Background()) {
		if img.Canonical == image {
			found = true
			if img.Digest == "" || img.Architecture != machineArch() {
				t.Fatalf("image entry %+v lacks its digest or architecture", img)
			}
		}
		if img.Canonical == "" {
			t.Fatalf("untagged image listed: %+v", img)
		}
	}
	if !found {
		t.Fatalf("kernel image %s not listed", image)
	}
}

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
