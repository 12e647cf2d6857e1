package images_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/images/registrytest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// Rescan reports each image's own architecture and the images gone since
// the previous rescan, as scan_images/scan_images_periodically do
// (agent/docker/agent.py, agent/agent.py).
func TestRescan(t *testing.T) {
	docker := kerneltest.Docker(t)
	svc := images.New(docker, images.Options{Logger: zerolog.Nop()})
	t.Cleanup(svc.Close)
	ctx := context.Background()
	prefix := fmt.Sprintf("baiagent-test/scan-%d", rand.Uint32())
	spec := map[string]string{"ai.backend.kernelspec": "1"}
	arm := prefix + "-arm:1"
	armID := registrytest.LoadImage(t, docker, arm, "arm64", spec)
	amdID := registrytest.LoadImage(t, docker, prefix+"-amd:1", "amd64", spec)
	registrytest.LoadImage(t, docker, prefix+"-nolabels:1", "amd64", nil)
	registrytest.LoadImage(t, docker, prefix+"-spec2:1", "amd64", map[string]string{"ai.backend.kernelspec": "2"})

	current, removed, err := svc.Rescan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mine := func(list []images.Installed) map[string]images.Installed {
		out := map[string]images.Installed{}
		for _, img := range list {
			if len(img.Canonical) > len(prefix) && img.Canonical[:len(prefix)] == prefix {
				out[img.Canonical] = img
			}
		}
		return out
	}
	got := mine(current)
	want := map[string]images.Installed{
		arm:               {Canonical: arm, Digest: armID, Architecture: "aarch64"},
		prefix + "-amd:1": {Canonical: prefix + "-amd:1", Digest: amdID, Architecture: "x86_64"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first scan lists\n%v\nwant\n%v", got, want)
	}
	if len(mine(removed)) != 0 {
		t.Fatalf("first scan reports removals %v", removed)
	}

	registrytest.RemoveImage(t, docker, arm)
	current, removed, err = svc.Rescan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mine(current)[arm]; ok {
		t.Errorf("removed image %s still listed", arm)
	}
	if gone := mine(removed); fmt.Sprint(gone) != fmt.Sprint(map[string]images.Installed{arm: want[arm]}) {
		t.Errorf("second scan reports removed %v, want only %s", gone, arm)
	}
	if _, removed, _ = svc.Rescan(ctx); len(mine(removed)) != 0 {
		t.Errorf("a removal is reported twice: %v", removed)
	}
}
