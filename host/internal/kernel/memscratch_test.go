package kernel_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestMemoryScratch pins upstream's scratch-type "memory"
// (agent/docker/agent.py prepare_scratch and _clean_scratch): the kernel's
// scratch dir and a tmp dir are each a 64 MiB tmpfs on the host, the tmp
// dir is the container's /tmp, and both are unmounted and removed with the
// kernel.
func TestMemoryScratch(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Need(t, "mounting a tmpfs needs root")
	}
	e := newEnv(t)
	m := e.manager(t, func(cfg *kernel.Config) { cfg.ScratchType = scratch.Memory })
	start(t, m)
	before := e.allocator.Snapshot()
	created := create(t, m, request(e.kid("k-mem")))
	dirs, err := scratch.For(e.scratchRoot, e.kid("k-mem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{dirs.Base, dirs.Tmp} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Fatalf("%s: filesystem type %#x (%v), want tmpfs", dir, st.Type, err)
		}
		if size := int64(st.Blocks) * int64(st.Bsize); size != scratch.MemorySize {
			t.Errorf("%s: %d bytes, want upstream's 64 MiB", dir, size)
		}
	}
	// Inside: /tmp is the tmp dir's tmpfs, and the work dir takes files.
	res := run(t, m, e.kid("k-mem"), "r1", runnerclient.ModeQuery,
		"grep ' /tmp ' /proc/mounts | cut -d' ' -f3; echo hi > /tmp/x && echo hi > /home/work/y && cat /tmp/x /home/work/y")
	if out := stdout(res); !strings.HasPrefix(out, "tmpfs\n") || !strings.HasSuffix(out, "hi\nhi\n") {
		t.Errorf("inside the kernel: %q", out)
	}
	if _, err := os.Stat(dirs.Tmp + "/x"); err != nil {
		t.Errorf("/tmp/x is not in the tmp dir: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.Destroy(ctx, e.kid("k-mem"), lifecycle.UserRequested); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{dirs.Base, dirs.Tmp} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after destroy: %v", dir, err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), dirs.Base) {
		t.Errorf("a tmpfs of %s is still mounted", created.KernelID)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
