package agent

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// The heartbeat lists local kernel images (those with the
// ai.backend.kernelspec label), as upstream's scan_images does.
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
