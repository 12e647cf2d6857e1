package kernel_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch/scratchtest"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// overfill writes 32 MiB into /home/work inside the kernel and returns
// what dd said.
func overfill(t *testing.T, m *kernel.Manager, kernelID string) string {
	t.Helper()
	res := run(t, m, kernelID, "fill", runnerclient.ModeQuery,
		"dd if=/dev/zero of=/home/work/big bs=1048576 count=32 2>&1; sync; echo done")
	return stdout(res)
}

// TestHostFileScratch pins upstream's scratch-type "hostfile" through the
// kernel (agent/docker/agent.py prepare_scratch and _clean_scratch,
// agent/scratch/utils.py create_loop_filesystem and
// destroy_loop_filesystem): the kernel's /home/work is on an ext4 of
// scratch-size, a write past it fails inside the kernel, a restarted agent
// takes the kernel back with its filesystem, and destroying it then
// unmounts the filesystem and deletes the image.
func TestHostFileScratch(t *testing.T) {
	scratchtest.Root(t)
	scratchtest.Tool(t, "mkfs.ext4")
	e := newEnv(t)
	hostfile := func(cfg *kernel.Config) { cfg.ScratchType, cfg.ScratchSize = scratch.HostFile, 16<<20 }
	m := e.manager(t, hostfile)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// This agent's event loop stops before the second agent starts.
	if _, err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = m.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	before := e.allocator.Snapshot()

	create(t, m, request(e.kid("k-hostfile")))
	dirs, err := scratch.For(e.scratchRoot, e.kid("k-hostfile"))
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dirs.Base, &fs); err != nil || fs.Type != unix.EXT4_SUPER_MAGIC || !scratchtest.Mounted(t, dirs.Base) {
		t.Fatalf("%s: filesystem %#x (%v), want a mounted ext4", dirs.Base, fs.Type, err)
	}
	if out := overfill(t, m, e.kid("k-hostfile")); !strings.Contains(out, "No space left") || !strings.HasSuffix(out, "done\n") {
		t.Fatalf("a 32 MiB write into a 16 MiB hostfile scratch: %q", out)
	}

	// An agent restart finds the kernel on its mounted filesystem.
	stopRun()
	<-runDone
	m.Close()
	e.allocator = kerneltest.NewAllocator(t, e.plugins)
	e.ports = kerneltest.PortsAt(t, e.portMin)
	second := e.manager(t, hostfile)
	if report := start(t, second); !reflect.DeepEqual(report.Recovered, []string{e.kid("k-hostfile")}) {
		t.Fatalf("recovered %v, want [k-hostfile]", report.Recovered)
	}
	wantOutput(t, run(t, second, e.kid("k-hostfile"), "after", runnerclient.ModeQuery, "test -f /home/work/big && echo kept"), 0, "kept\n")
	if _, err := second.Destroy(ctx, e.kid("k-hostfile"), lifecycle.UserRequested); err != nil {
		t.Fatal(err)
	}
	if scratchtest.Mounted(t, dirs.Base) {
		t.Errorf("%s is still mounted after destroy", dirs.Base)
	}
	for _, p := range []string{dirs.Base, dirs.Image} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after destroy: %v", p, err)
		}
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestHostDirScratchQuota: with scratch-size on a scratch root whose
// filesystem enforces project quotas, a kernel cannot write past it into
// /home/work. Upstream only advertises scratch-size for hostdir
// (agent/docker/agent.py prepare_scratch, config/unified.py scratch_size);
// the limit is baiagent's, where the filesystem allows.
func TestHostDirScratchQuota(t *testing.T) {
	mnt := scratchtest.ProjectQuotaFS(t)
	e := newEnv(t)
	e.scratchRoot = filepath.Join(mnt, "scratches")
	m := e.manager(t, func(cfg *kernel.Config) { cfg.ScratchSize = 16 << 20 })
	start(t, m)
	before := e.allocator.Snapshot()
	create(t, m, request(e.kid("k-quota")))
	if out := overfill(t, m, e.kid("k-quota")); !strings.Contains(out, "Disk quota exceeded") || !strings.HasSuffix(out, "done\n") {
		t.Fatalf("a 32 MiB write into a scratch dir limited to 16 MiB: %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.Destroy(ctx, e.kid("k-quota"), lifecycle.UserRequested); err != nil {
		t.Fatal(err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}

// TestHostDirScratchSizeWarning: where the scratch root's filesystem cannot
// enforce a hostdir scratch-size, the manager says so once at start, naming
// the filesystem, and makes scratch dirs as upstream does.
func TestHostDirScratchSizeWarning(t *testing.T) {
	mnt := scratchtest.LoopFS(t, 32<<20, []string{"mkfs.ext4", "-q"}, "ext4", "")
	e := newEnv(t)
	e.scratchRoot = filepath.Join(mnt, "scratches")
	var logs testutil.SyncBuffer
	e.manager(t, func(cfg *kernel.Config) {
		cfg.ScratchSize = 16 << 20
		cfg.Logger = zerolog.New(&logs)
	})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"warn"`) ||
		!strings.Contains(lines[0], "container.scratch-size: the ext4 filesystem at "+mnt) ||
		!strings.Contains(lines[0], "only advertised in resource.txt") {
		t.Fatalf("start logged %q, want one warning naming the ext4 filesystem", lines)
	}
}
