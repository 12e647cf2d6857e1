package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
)

// removeNetworkAtEnd removes a test network whatever the test did (its
// kernels' containers first, or Docker refuses).
func removeNetworkAtEnd(t *testing.T, e *env, name string) {
	t.Cleanup(func() {
		kerneltest.RemoveLabelled(t, e.docker, kernel.LabelAgentID, e.agentID)
		_, err := e.docker.NetworkRemove(context.Background(), name, client.NetworkRemoveOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove test network %s: %v", name, err)
		}
	})
}

// On the fake engine: the names are the manager's own validation.
func TestLocalNetworkNames(t *testing.T) {
	e, _ := newFakeEnv(t)
	m := e.manager(t)
	ctx := context.Background()
	// A network that create_local_network did not make (no label).
	foreign := fmt.Sprintf("baiagent-foreign-%d", rand.Uint64())
	if err := e.engine.NetworkCreate(ctx, foreign, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		description string
		op          func(context.Context, string) error
		name        string
	}{
		{"create with an empty name", m.CreateLocalNetwork, ""},
		{"create with a path in the name", m.CreateLocalNetwork, "../escape"},
		{"create with a separator", m.CreateLocalNetwork, "a/b"},
		{"create Docker's default bridge", m.CreateLocalNetwork, "bridge"},
		{"destroy the host network", m.DestroyLocalNetwork, "host"},
		{"destroy the none network", m.DestroyLocalNetwork, "none"},
		{"destroy a network without the cluster-network label", m.DestroyLocalNetwork, foreign},
	} {
		err := tc.op(ctx, tc.name)
		if !errors.Is(err, kernel.ErrInvalidNetwork) || (tc.name != "" && !strings.Contains(err.Error(), tc.name)) {
			t.Errorf("%s: %v, want ErrInvalidNetwork naming %q", tc.description, err, tc.name)
		}
	}
	if _, err := e.engine.NetworkInspect(ctx, foreign); err != nil {
		t.Errorf("the foreign network was removed: %v", err)
	}
	// Destroying a network that is not there is not an error (upstream).
	if err := m.DestroyLocalNetwork(ctx, fmt.Sprintf("baiagent-missing-%d", rand.Uint64())); err != nil {
		t.Errorf("destroy a missing network: %v", err)
	}
}

// TestLocalNetworkConnectsKernels creates a session network, two kernels
// on it, and has one fetch a page from the other by cluster hostname.
func TestLocalNetworkConnectsKernels(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := fmt.Sprintf("bai-singlenode-test-%d", rand.Uint64())
	removeNetworkAtEnd(t, e, name)

	if err := m.CreateLocalNetwork(ctx, name); err != nil {
		t.Fatalf("create_local_network: %v", err)
	}
	if err := m.CreateLocalNetwork(ctx, name); err != nil {
		t.Fatalf("create_local_network a second time: %v", err)
	}
	insp, err := e.docker.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if insp.Network.Driver != "bridge" || insp.Network.Labels[kernel.LabelClusterNetwork] != "1" {
		t.Errorf("network driver %q labels %v, want bridge with %s=1", insp.Network.Driver, insp.Network.Labels, kernel.LabelClusterNetwork)
	}

	// A kernel naming a network that does not exist takes nothing.
	lost := request(e.kid("k-net-lost"))
	lost.Network = name + "-missing"
	if _, err := m.Create(ctx, lost); !errors.Is(err, kernel.ErrInvalidRequest) || !strings.Contains(err.Error(), lost.Network) {
		t.Errorf("create on a missing network: %v, want ErrInvalidRequest naming it", err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)

	kernels := map[string]string{e.kid("k-net-main"): "main1", e.kid("k-net-sub"): "sub1"}
	for id, host := range kernels {
		req := request(id)
		req.ResourceSlots["cpu"] = decimal.Zero // share the cores
		req.Network, req.ClusterRole, req.ClusterHostname = name, strings.TrimSuffix(host, "1"), host
		created := create(t, m, req)
		c, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ep := c.Container.NetworkSettings.Networks[name]
		if string(c.Container.HostConfig.NetworkMode) != name || ep == nil || !slices.Contains(ep.Aliases, host) {
			t.Errorf("%s: network mode %q endpoint %+v, want only %s with alias %s", id, c.Container.HostConfig.NetworkMode, ep, name, host)
		}
	}
	// The host ports still work on the session network: the runner
	// answers through them.
	wantOutput(t, run(t, m, e.kid("k-net-sub"), "serve", runnerclient.ModeQuery,
		"echo served-by-sub1 > /home/work/index.html && httpd -p 8000 -h /home/work && echo up"), 0, "up\n")
	var got string
	for try := 0; try < 20; try++ {
		got = stdout(run(t, m, e.kid("k-net-main"), fmt.Sprintf("fetch-%d", try), runnerclient.ModeQuery,
			"timeout 5 wget -q -O - http://sub1:8000/index.html 2>&1"))
		if got == "served-by-sub1\n" {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got != "served-by-sub1\n" {
		t.Fatalf("main1 fetching http://sub1:8000/: %q", got)
	}

	// Docker refuses to remove a network in use; the error names it.
	if err := m.DestroyLocalNetwork(ctx, name); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("destroying a network in use: %v, want an error naming %s", err, name)
	}
	for id := range kernels {
		if _, err := m.Destroy(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.DestroyLocalNetwork(ctx, name); err != nil {
		t.Fatalf("destroy_local_network: %v", err)
	}
	if _, err := e.docker.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the network is still there: %v", err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
