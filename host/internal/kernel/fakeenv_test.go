package kernel_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/baiagent/baiagent/host/internal/kernel/enginetest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// newFakeEnv is newEnv on the in-memory engine, for tests about the
// manager's validation and state rather than Docker: the test image is
// there with BusyboxLabels, and the runner is an empty file (no container
// runs it, so no runner ever answers).
func newFakeEnv(t testing.TB) (*env, *enginetest.Fake) {
	t.Helper()
	fake := enginetest.NewFake()
	var cfg dockerspec.DockerOCIImageConfig
	cfg.Labels = kerneltest.BusyboxLabels()
	cfg.Cmd = []string{"/bin/sh"}
	fake.AddImage(kerneltest.BusyboxImage, cfg, runtime.GOARCH)
	e := &env{engine: fake, image: kerneltest.BusyboxImage, agentID: fmt.Sprintf("test-agent-%d", rand.Uint64())}
	e.runnerPath = filepath.Join(t.TempDir(), "baiagent-kernel-runner")
	if err := os.WriteFile(e.runnerPath, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	e.plugins, e.allocator = kerneltest.CPUPlugin(t)
	e.portMin = kerneltest.RandomPortBase()
	e.ports = kerneltest.PortsAt(t, e.portMin)
	e.scratchRoot = t.TempDir()
	t.Cleanup(func() {
		if left := kerneltest.ScratchEntries(t, e.scratchRoot); len(left) > 0 {
			t.Errorf("scratch dirs left behind: %v", left)
		}
	})
	return e, fake
}
