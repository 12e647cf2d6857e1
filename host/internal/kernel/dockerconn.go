package kernel

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"
)

// ConnectDocker connects to the local Docker engine (DOCKER_HOST and the
// other DOCKER_* variables) and checks that it answers, so that an agent
// without Docker fails at start rather than at its first kernel. The
// caller closes the client.
func ConnectDocker(ctx context.Context) (*client.Client, error) {
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		_ = docker.Close()
		return nil, fmt.Errorf("cannot reach the Docker engine (backend = docker): %w", err)
	}
	return docker, nil
}

// ContainerPID is the host pid of a container's main process, 0 when the
// container does not run.
func ContainerPID(ctx context.Context, docker client.APIClient, containerID string) (int, error) {
	insp, err := docker.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("inspect container %s: %w", containerID, err)
	}
	if insp.Container.State == nil {
		return 0, nil
	}
	return insp.Container.State.Pid, nil
}
