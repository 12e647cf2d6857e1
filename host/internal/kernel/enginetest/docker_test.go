package enginetest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/enginetest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
)

// The Docker engine keeps the contract the fake is held to, so that what
// the kernel tests learn on the fake holds on Docker. Without a daemon it
// skips, except under CI, where it fails.
func TestDockerContract(t *testing.T) {
	docker := kerneltest.Docker(t)
	image := kerneltest.BuildBusybox(t, docker)
	e := kernel.NewDockerEngine(docker)
	enginetest.Contract(t, enginetest.Harness{
		Engine: e, Image: image,
		ImageLabels: map[string]string{"ai.backend.runtime-type": "shell"},
		Exit: func(t *testing.T, containerID string, code int) {
			cmd := []string{"sh", "-c", fmt.Sprintf("echo %d > %s", code, enginetest.ExitFile)}
			if res, err := e.ContainerExec(context.Background(), containerID, "root", cmd); err != nil || res.ExitCode != 0 {
				t.Fatalf("exec %v: %+v, %v", cmd, res, err)
			}
		},
	})
}
