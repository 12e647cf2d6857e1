package kernel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// TestPluginHooksAndNetworks: a plugin's hook is mounted read-only under
// /opt/kernel and preloaded, and the container joins the plugin's Docker
// network, for a kernel that got the plugin's devices; a kernel without
// them gets neither, and a hook missing on the host fails creation naming
// the plugin with nothing left behind.
func TestPluginHooksAndNetworks(t *testing.T) {
	e := newEnv(t)
	hook := filepath.Join(t.TempDir(), "libfakehook.so")
	// Never loaded: the runner and busybox are static, so the loader never
	// reads LD_PRELOAD; the kernel only sees the file and the variable.
	if err := os.WriteFile(hook, []byte("fake hook\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	netName := fmt.Sprintf("baiagent-test-fabric-%d", rand.Uint64())
	ctx := context.Background()
	if _, err := e.docker.NetworkCreate(ctx, netName, client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.docker.NetworkRemove(context.Background(), netName, client.NetworkRemoveOptions{}) })
	e.plugins, e.allocator = kerneltest.Plugins(t, map[string]map[string]any{
		kerneltest.FakePlugin: {"hook": hook, "network": netName},
	})
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	withDevice := request(e.kid("k-hooked"))
	withDevice.ResourceSlots["fake.device"] = decimal.NewFromInt(1)
	withDevice.Env["LD_PRELOAD"] = "/usr/lib/libsession.so"
	created := create(t, m, withDevice)
	wantOutput(t, run(t, m, e.kid("k-hooked"), "r1", runnerclient.ModeQuery, "echo $LD_PRELOAD; cat /opt/kernel/libfakehook.so; echo x > /opt/kernel/libfakehook.so || echo read-only"),
		0, "/usr/lib/libsession.so:/opt/kernel/libfakehook.so\nfake hook\nread-only\n")
	insp, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := insp.Container.NetworkSettings.Networks[netName]; !ok {
		t.Errorf("kernel with the plugin's device is on networks %v, want %s too", keys(insp.Container.NetworkSettings.Networks), netName)
	}

	plain := create(t, m, request(e.kid("k-plain")))
	wantOutput(t, run(t, m, e.kid("k-plain"), "r1", runnerclient.ModeQuery, "echo \"[$LD_PRELOAD]\"; ls /opt/kernel"), 0, "[]\n"+filepath.Base(kernel.RunnerMountPath)+"\n")
	insp, err = e.docker.ContainerInspect(ctx, plain.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := insp.Container.NetworkSettings.Networks[netName]; ok {
		t.Errorf("kernel without the plugin's devices joined %s", netName)
	}
	for _, id := range []string{e.kid("k-hooked"), e.kid("k-plain")} {
		if _, err := m.Destroy(ctx, id, lifecycle.UserRequested); err != nil {
			t.Fatal(err)
		}
	}
	e.wantIdle(t, e.allocator, e.ports, before)

	if err := os.Remove(hook); err != nil {
		t.Fatal(err)
	}
	missing := request(e.kid("k-nohook"))
	missing.ResourceSlots["fake.device"] = decimal.NewFromInt(1)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err = m.Create(cctx, missing)
	if err == nil || !strings.Contains(err.Error(), "plugin fake: hook "+hook) {
		t.Fatalf("creation with the hook file gone: %v, want an error naming plugin fake and the hook", err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
