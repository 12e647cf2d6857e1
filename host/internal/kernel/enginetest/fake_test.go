package enginetest_test

import (
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/baiagent/baiagent/host/internal/kernel/enginetest"
)

// The fake keeps the contract the Docker engine keeps (docker_test.go).
func TestFakeContract(t *testing.T) {
	f := enginetest.NewFake()
	labels := map[string]string{"ai.backend.runtime-type": "shell"}
	var cfg dockerspec.DockerOCIImageConfig
	cfg.Labels = labels
	f.AddImage("baiagent-test/busybox", cfg, "amd64")
	enginetest.Contract(t, enginetest.Harness{
		Engine: f, Image: "baiagent-test/busybox:latest", ImageLabels: labels,
		Exit: func(t *testing.T, containerID string, code int) {
			if err := f.Exit(containerID, code); err != nil {
				t.Fatal(err)
			}
		},
	})
}
