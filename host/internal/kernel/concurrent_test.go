package kernel_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// concurrentKernels is how many kernels TestConcurrentKernels runs at once.
const concurrentKernels = 20

// TestConcurrentKernels creates 20 kernels at once, runs code in each,
// destroys them all at once, and checks that nothing leaked: no container
// of this agent left, the port pool and the allocator back where they
// started, no scratch dir.
//
// Each kernel asks for cpu 1 and mem 64 MiB. The cpu plugin's slots are
// whole units on a discrete EVENLY map, one device per core with capacity
// cpu-overcommit-factor (upstream's BACKEND_CPU_OVERCOMMIT_FACTOR, 1..10),
// so on a 2-core machine the plugin runs with factor 10: 20 cpu units, one
// per kernel, the allocator's own accounting with nothing faked.
func TestConcurrentKernels(t *testing.T) {
	e := newEnv(t)
	e.plugins, e.allocator = kerneltest.Plugins(t, map[string]map[string]any{"cpu": {"cpu-overcommit-factor": 10}})
	var cpuTotal decimal.Decimal
	for _, st := range e.allocator.SlotTotals() {
		if st.Slot == "cpu" {
			cpuTotal = st.Total
		}
	}
	if cpuTotal.LessThan(decimal.NewFromInt(concurrentKernels)) {
		t.Skipf("%s cpu units with overcommit 10 (one core?); %d kernels need %d", cpuTotal, concurrentKernels, concurrentKernels)
	}
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	portsBefore := e.ports.InUse()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, concurrentKernels)
	var mu sync.Mutex
	created := map[string]kernel.Created{}
	for i := range concurrentKernels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := e.kid(fmt.Sprintf("k-par-%02d", i))
			req := request(id)
			req.ResourceSlots["cpu"] = decimal.NewFromInt(1)
			req.ResourceSlots["mem"] = decimal.NewFromInt(64 << 20)
			c, err := m.Create(ctx, req)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			created[id] = c
			mu.Unlock()
			res, err := m.Execute(ctx, id, "r", runnerclient.ModeQuery, "echo $BACKENDAI_KERNEL_ID", runnerclient.ExecOptions{FlushTimeout: 10 * time.Second})
			if err != nil || res.Status != runnerclient.StatusFinished || stdout(res) != id+"\n" {
				errs <- fmt.Errorf("execute in %s: %+v, %v", id, res, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every kernel is registered, running, in its own container, on its
	// own ports, and the allocator counts each one's cpu and mem.
	infos := m.List()
	if len(infos) != concurrentKernels {
		t.Fatalf("%d kernels listed, want %d", len(infos), concurrentKernels)
	}
	seenPorts := map[int]string{}
	for _, info := range infos {
		if info.State != "running" {
			t.Errorf("kernel %s is %s", info.KernelID, info.State)
		}
		ports := []int{info.ReplInPort, info.ReplOutPort}
		for _, sp := range info.ServicePorts {
			ports = append(ports, sp.HostPorts...)
		}
		for _, p := range ports {
			if other, dup := seenPorts[p]; dup {
				t.Errorf("host port %d given to %s and %s", p, other, info.KernelID)
			}
			seenPorts[p] = info.KernelID
		}
	}
	if got := e.ports.InUse() - portsBefore; got != 4*concurrentKernels {
		t.Errorf("%d ports in use, want %d (4 a kernel: repl in/out, sshd, web)", got, 4*concurrentKernels)
	}
	allocated := map[string]decimal.Decimal{}
	for _, u := range e.allocator.Snapshot() {
		allocated[u.Slot] = allocated[u.Slot].Add(u.Allocated)
	}
	if want := decimal.NewFromInt(concurrentKernels); !allocated["cpu"].Equal(want) {
		t.Errorf("cpu allocated %s, want %s", allocated["cpu"], want)
	}
	if want := decimal.NewFromInt(concurrentKernels * 64 << 20); !allocated["mem"].Equal(want) {
		t.Errorf("mem allocated %s, want %s", allocated["mem"], want)
	}
	list, err := e.docker.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("label", kernel.LabelAgentID+"="+e.agentID)})
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, c := range list.Items {
		running = append(running, c.Labels[kernel.LabelKernelID])
	}
	sort.Strings(running)
	if len(running) != concurrentKernels {
		t.Errorf("%d running containers with this agent's label, want %d: %v", len(running), concurrentKernels, running)
	}

	errs = make(chan error, concurrentKernels)
	for _, info := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			term, err := m.Destroy(ctx, info.KernelID, "")
			if err != nil {
				errs <- fmt.Errorf("destroy %s: %w", info.KernelID, err)
			} else if term.Reason != lifecycle.UserRequested || term.ContainerID != created[info.KernelID].ContainerID {
				errs <- fmt.Errorf("destroy %s: termination %+v", info.KernelID, term)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Nothing leaked.
	if got := m.List(); len(got) != 0 {
		t.Errorf("registry after destroying everything: %+v", got)
	}
	list, err = e.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", kernel.LabelAgentID+"="+e.agentID)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d containers with this agent's label left", len(list.Items))
	}
	if got := e.ports.InUse(); got != portsBefore {
		t.Errorf("%d host ports in use, want %d as at the start", got, portsBefore)
	}
	if got := e.allocator.Snapshot(); !sameUsage(got, before) {
		t.Errorf("allocation not back to where it started:\n got %+v\nwant %+v", got, before)
	}
	if left := kerneltest.ScratchEntries(t, e.scratchRoot); len(left) != 0 {
		t.Errorf("scratch dirs left: %v", left)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.terminations) != concurrentKernels {
		t.Errorf("%d terminations reported, want %d", len(e.terminations), concurrentKernels)
	}
}
