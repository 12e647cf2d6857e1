package kernel_test

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// TestSkipContainerDeletionAndSyncSwitch pins upstream's clean_kernel
// (agent/docker/agent.py, 26.8.1: debug.skip-container-deletion keeps the
// container) and agent.sync-container-lifecycles.enabled (agent/agent.py:
// no periodic sync when off).
func TestSkipContainerDeletionAndSyncSwitch(t *testing.T) {
	cases := []struct {
		description   string
		keep, noSync  bool
		wantKept      bool // the destroyed kernel's container is still there
		wantAlienKept bool // an unknown container of this agent survives reconciliation
	}{
		{"defaults: removed, and strays removed by the sync", false, false, false, false},
		{"skip-container-deletion: kept, strays kept too", true, false, true, true},
		{"sync off: strays survive, destroy still removes", false, true, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, func(cfg *kernel.Config) {
				cfg.KeepContainers, cfg.NoPeriodicReconcile = tc.keep, tc.noSync
				cfg.ReconcileInterval = 200 * time.Millisecond
			})
			start(t, m)
			ctx := context.Background()
			created := create(t, m, request(e.kid("k-keep")))
			if _, err := m.Destroy(ctx, e.kid("k-keep"), "user-requested"); err != nil {
				t.Fatal(err)
			}
			e.waitTermination(t, e.kid("k-keep"))
			alien, err := e.docker.ContainerCreate(ctx, client.ContainerCreateOptions{
				Config: &container.Config{Image: e.image, Cmd: []string{"sleep", "600"},
					Labels: map[string]string{kernel.LabelOwner: e.agentID, kernel.LabelAgentID: e.agentID, kernel.LabelKernelID: e.kid("k-alien")}},
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // several sync periods
			if got := exists(t, e, created.ContainerID); got != tc.wantKept {
				t.Errorf("destroyed kernel's container exists = %v, want %v", got, tc.wantKept)
			}
			if got := exists(t, e, alien.ID); got != tc.wantAlienKept {
				t.Errorf("stray container exists = %v, want %v", got, tc.wantAlienKept)
			}
		})
	}
}

func exists(t *testing.T, e *env, containerID string) bool {
	t.Helper()
	_, err := e.docker.ContainerInspect(context.Background(), containerID, client.ContainerInspectOptions{})
	return err == nil
}
