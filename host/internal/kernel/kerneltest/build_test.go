package kerneltest

import (
	"context"
	"testing"
)

// TestBuildBusybox builds BusyboxImage; scripts/bench-scale.sh runs it to
// make the image its kernels use.
func TestBuildBusybox(t *testing.T) {
	docker := Docker(t)
	image := BuildBusybox(t, docker)
	insp, err := docker.ImageInspect(context.Background(), image)
	if err != nil {
		t.Fatal(err)
	}
	if insp.Config == nil || insp.Config.Labels["ai.backend.runtime-type"] != "shell" {
		t.Errorf("image %s lacks the kernel labels: %+v", image, insp.Config)
	}
}
