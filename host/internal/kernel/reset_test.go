package kernel_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// TestResetAgentDestroysEveryKernel: reset_agent leaves no kernel,
// container, port, scratch dir or allocation behind, and reports each
// kernel's end.
func TestResetAgentDestroysEveryKernel(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if terms, err := m.Reset(ctx); err != nil || len(terms) != 0 {
		t.Fatalf("reset with no kernels: %+v, %v", terms, err)
	}
	var ids []string
	for i := range 3 {
		id := e.kid(fmt.Sprintf("k-reset-%d", i))
		req := request(id)
		req.ResourceSlots["cpu"] = decimal.Zero
		req.ResourceSlots["mem"] = decimal.NewFromInt(64 << 20)
		create(t, m, req)
		ids = append(ids, id)
	}
	if n := e.ports.InUse(); n != 12 {
		t.Fatalf("%d ports in use with 3 kernels, want 12", n)
	}

	terms, err := m.Reset(ctx)
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	var got []string
	for _, term := range terms {
		got = append(got, term.KernelID)
		if term.Reason != lifecycle.ForceTerminated {
			t.Errorf("%s ended with reason %q, want %q", term.KernelID, term.Reason, lifecycle.ForceTerminated)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("reset terminated %v, want %v", got, ids)
	}
	for _, id := range ids {
		if term, ok := e.termination(id); !ok || term.Reason != lifecycle.ForceTerminated {
			t.Errorf("%s: termination reported %+v (%v)", id, term, ok)
		}
	}
	if left := m.List(); len(left) != 0 {
		t.Errorf("kernels left: %+v", left)
	}
	list, err := e.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", kernel.LabelAgentID+"="+e.agentID)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d containers left", len(list.Items))
	}
	if left := kerneltest.ScratchEntries(t, e.scratchRoot); len(left) != 0 {
		t.Errorf("scratch dirs left: %v", left)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
