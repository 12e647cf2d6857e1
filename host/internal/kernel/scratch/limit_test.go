package scratch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch/scratchtest"
)

// nobody writes in the tests: root may pass quota limits (ext4 lets
// CAP_SYS_RESOURCE through), a kernel's user does not.
const nobody = 65534

// writeAs writes n MiB of zeros to path as uid nobody and returns dd's
// failure, if any, with its message.
func writeAs(t *testing.T, path string, mib int) error {
	t.Helper()
	cmd := exec.Command(scratchtest.Tool(t, "dd"), "if=/dev/zero", "of="+path, "bs=1M", fmt.Sprint("count=", mib), "conv=fsync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func wantFull(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: a 32 MiB write past a 16 MiB scratch-size succeeded", what)
	}
	if msg := err.Error(); !strings.Contains(msg, "Disk quota exceeded") && !strings.Contains(msg, "No space left") {
		t.Fatalf("%s: %v, want EDQUOT or ENOSPC", what, err)
	}
}

func projectOf(t *testing.T, dir string) (id uint32, inherit bool) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var x fsxattr
	if err := getXAttr(fd, &x); err != nil {
		t.Fatalf("%s: FS_IOC_FSGETXATTR: %v", dir, err)
	}
	return x.ProjID, x.XFlags&fsXFlagProjInherit != 0
}

// limitsOf reads project id's block hard limit through the filesystem of dir.
func limitsOf(t *testing.T, dir string, id uint32) ifDqblk {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var dq ifDqblk
	if err := getQuota(fd, id, &dq); err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Q_GETQUOTA %d: %v", id, err)
	}
	return dq
}

// TestHostDirProjectQuota: scratch-size limits a hostdir scratch dir where
// the filesystem has enforced project quotas. Upstream never limits a
// hostdir scratch (agent/docker/agent.py prepare_scratch only mkdirs it;
// config/unified.py says scratch-size is "only effective" for hostfile),
// so this is baiagent's own, and leaves every other behaviour alone.
func TestHostDirProjectQuota(t *testing.T) {
	for _, fs := range []struct {
		name  string
		mount func(testing.TB) string
	}{{"ext4", scratchtest.ProjectQuotaFS}, {"xfs", scratchtest.XFSProjectQuotaFS}} {
		t.Run(fs.name, func(t *testing.T) {
			mnt := fs.mount(t)
			root := filepath.Join(mnt, "scratches") // made by the first Create
			limit := PlanSizeLimit(HostDir, root, 16<<20)
			if !limit.Enforced || limit.Quota == nil || !strings.Contains(limit.Detail, "project quota") || !strings.Contains(limit.Detail, fs.name) {
				t.Fatalf("plan: %+v, want a project quota on %s", limit, fs.name)
			}
			ctx := context.Background()
			spec := Spec{Kind: HostDir, Size: 16 << 20, Quota: limit.Quota}
			t.Cleanup(func() { _ = Remove(root, "k-limited"); _ = Remove(root, "k-free") })
			limited, err := spec.Create(ctx, root, "k-limited", nobody, nobody)
			if err != nil {
				t.Fatal(err)
			}
			// A sibling made without a limit, as a hostdir without scratch-size.
			free, err := Spec{Kind: HostDir}.Create(ctx, root, "k-free", nobody, nobody)
			if err != nil {
				t.Fatal(err)
			}
			id, inherit := projectOf(t, limited.Work)
			if !ownProjectID(id) || !inherit {
				t.Fatalf("work dir: project %d (inherit %v), want one of ours, inherited", id, inherit)
			}
			if other, _ := projectOf(t, free.Work); other != 0 {
				t.Errorf("the unlimited sibling is in project %d", other)
			}
			if got := limitsOf(t, mnt, id).BHardLimit; got != 16<<10 {
				t.Errorf("block hard limit %d KiB, want %d", got, 16<<10)
			}
			wantFull(t, writeAs(t, filepath.Join(limited.Work, "big"), 32), "limited scratch")
			if err := writeAs(t, filepath.Join(free.Work, "big"), 32); err != nil {
				t.Fatalf("the sibling without a limit: %v", err)
			}
			if err := Remove(root, "k-limited"); err != nil {
				t.Fatal(err)
			}
			if dq := limitsOf(t, mnt, id); dq.BHardLimit != 0 || dq.IHardLimit != 0 {
				t.Errorf("after removal project %d still has limits %+v", id, dq)
			}
			if _, err := os.Stat(limited.Base); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("scratch dir still there: %v", err)
			}
		})
	}
}

// TestProjectIDCollision: a project id the filesystem already has limits
// or usage for belongs to someone else, and the next one is taken; the same
// kernel id starts from the same project id every time.
func TestProjectIDCollision(t *testing.T) {
	mnt := scratchtest.ProjectQuotaFS(t)
	root := filepath.Join(mnt, "scratches")
	limit := PlanSizeLimit(HostDir, root, 16<<20)
	if limit.Quota == nil {
		t.Fatalf("plan: %+v", limit)
	}
	first := firstProjectID("k-collide")
	if firstProjectID("k-collide") != first || !ownProjectID(first) {
		t.Fatalf("first project id %d is not stable or not ours", first)
	}
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The operator's: limits and no files yet.
	if err := setQuota(fd, first, &ifDqblk{IHardLimit: 10, Valid: qifILimits}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = setQuota(fd, first, &ifDqblk{Valid: qifILimits}) })
	t.Cleanup(func() { _ = Remove(root, "k-collide") })
	d, err := Spec{Kind: HostDir, Size: 16 << 20, Quota: limit.Quota}.Create(context.Background(), root, "k-collide", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := projectOf(t, d.Base); id == first || !ownProjectID(id) {
		t.Fatalf("project %d: want ours and not the taken %d", id, first)
	}
	if dq := limitsOf(t, mnt, first); dq.IHardLimit != 10 || dq.BHardLimit != 0 {
		t.Errorf("the operator's project %d was changed: %+v", first, dq)
	}
}

// TestPlanSizeLimitUnenforceable: where the filesystem cannot enforce a
// hostdir scratch-size, the plan says so and names the filesystem.
func TestPlanSizeLimitUnenforceable(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		mount      func(testing.TB) string
	}{
		{"ext4 without the project feature", "no project quotas", func(t testing.TB) string {
			return scratchtest.LoopFS(t, 32<<20, []string{"mkfs.ext4", "-q"}, "ext4", "")
		}},
		{"ext4 mounted without prjquota", "mount it with prjquota", func(t testing.TB) string {
			return scratchtest.LoopFS(t, 32<<20, []string{"mkfs.ext4", "-q", "-O", "quota,project"}, "ext4", "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(tc.mount(t), "not", "yet")
			limit := PlanSizeLimit(HostDir, root, 16<<20)
			if limit.Enforced || limit.Quota != nil {
				t.Fatalf("plan %+v, want not enforced", limit)
			}
			for _, want := range []string{"the ext4 filesystem", tc.want, "only advertised in resource.txt"} {
				if !strings.Contains(limit.Detail, want) {
					t.Errorf("detail %q lacks %q", limit.Detail, want)
				}
			}
		})
	}
	if l := PlanSizeLimit(HostDir, t.TempDir(), 0); l.Enforced || l.Quota != nil {
		t.Errorf("scratch-size 0: %+v", l)
	}
}

// TestQuotaABI pins the layouts of the kernel structs quota.go declares
// (linux/quota.h if_dqblk, linux/dqblk_xfs.h fs_quota_statv, linux/fs.h
// fsxattr), which the ioctl numbers encode too.
func TestQuotaABI(t *testing.T) {
	var st fsQuotaStatV
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"if_dqblk", unsafe.Sizeof(ifDqblk{}), 72},
		{"if_dqblk.dqb_valid", unsafe.Offsetof(ifDqblk{}.Valid), 64},
		{"fs_quota_statv", unsafe.Sizeof(st), 160},
		{"fs_quota_statv.qs_flags", unsafe.Offsetof(st.Flags), 2},
		{"fs_quota_statv.qs_btimelimit", unsafe.Offsetof(st.TimeLimits), 80},
		{"fsxattr", unsafe.Sizeof(fsxattr{}), 28},
		{"fsxattr.fsx_projid", unsafe.Offsetof(fsxattr{}.ProjID), 12},
		{"FS_IOC_FSGETXATTR size", fsIocFSGetXAttr >> 16 & 0x3fff, unsafe.Sizeof(fsxattr{})},
		{"FS_IOC_FSSETXATTR size", fsIocFSSetXAttr >> 16 & 0x3fff, unsafe.Sizeof(fsxattr{})},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if got := qcmd(qSetQuota, prjQuota); got != 0x80000802 {
		t.Errorf("QCMD(Q_SETQUOTA, PRJQUOTA) = %#x", got)
	}
}

// TestProjectInheritOnXFS: the fsxattr ioctls set a project id that new
// dirs below inherit, on a filesystem that keeps project ids without
// quotas; Remove of such a dir, with no quota to lift, still works.
func TestProjectInheritOnXFS(t *testing.T) {
	root := scratchtest.LoopFS(t, 320<<20, []string{"mkfs.xfs", "-q"}, "xfs", "")
	d, err := Create(root, "k-xfs", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(d.Base, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var x fsxattr
	if err := getXAttr(fd, &x); err != nil {
		t.Fatal(err)
	}
	id := firstProjectID("k-xfs")
	x.ProjID, x.XFlags = id, x.XFlags|fsXFlagProjInherit
	err = setXAttr(fd, &x)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(d.Base, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, inherit := projectOf(t, child); got != id || !inherit {
		t.Fatalf("new dir: project %d (inherit %v), want %d inherited", got, inherit, id)
	}
	if err := Remove(root, "k-xfs"); err != nil {
		t.Fatal(err)
	}
}
