package agent

import (
	"context"
	"sync"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/stats"
)

// containerTargets lists the kernels' containers for the statistics, each
// with its init process and cgroup. Both stay the same while a container
// runs (a restarted kernel gets a new container), so a container is
// inspected until that succeeds and then never again: with one docker
// inspect per kernel per round, the agent's idle cost grew with its kernels.
type containerTargets struct {
	docker  client.APIClient
	kernels *kernel.Manager

	mu    sync.Mutex
	known map[string]procRef // by container ID, only containers listed last round
}

type procRef struct {
	pid        int
	cgroupPath string
}

func newContainerTargets(docker client.APIClient, kernels *kernel.Manager) *containerTargets {
	return &containerTargets{docker: docker, kernels: kernels, known: map[string]procRef{}}
}

// list is a stats.ContainersFunc.
func (t *containerTargets) list(ctx context.Context) ([]stats.ContainerTarget, error) {
	infos := t.kernels.List()
	t.mu.Lock()
	defer t.mu.Unlock()
	listed := make(map[string]bool, len(infos))
	out := make([]stats.ContainerTarget, 0, len(infos))
	for _, k := range infos {
		target := stats.ContainerTarget{KernelID: k.KernelID, ContainerID: k.ContainerID}
		if k.ContainerID != "" {
			listed[k.ContainerID] = true
			ref, ok := t.known[k.ContainerID]
			if !ok {
				ref = t.inspect(ctx, k.ContainerID)
				// A container that is not running (yet) is asked again
				// next round.
				if ref.pid > 0 && ref.cgroupPath != "" {
					t.known[k.ContainerID] = ref
				}
			}
			target.PID, target.CgroupPath = ref.pid, ref.cgroupPath
		}
		out = append(out, target)
	}
	for id := range t.known {
		if !listed[id] {
			delete(t.known, id)
		}
	}
	return out, nil
}

func (t *containerTargets) inspect(ctx context.Context, containerID string) procRef {
	pid, err := kernel.ContainerPID(ctx, t.docker, containerID)
	if err != nil || pid == 0 {
		return procRef{}
	}
	ref := procRef{pid: pid}
	ref.cgroupPath, _ = stats.CgroupPathOfPID("/proc", pid)
	return ref
}
