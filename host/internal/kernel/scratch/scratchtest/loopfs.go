// Package scratchtest makes real filesystems for scratch tests: an image
// file in the test's temp dir, formatted and loop-mounted.
package scratchtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tool finds a program the test needs. Missing, it skips the test, or
// fails it under CI=true, where .ci/run installs it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isFile(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing; .ci/run installs it", name)
	}
	t.Skipf("%s is missing", name)
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Root skips the test unless it runs as root (or fails it under CI=true,
// which runs as root): mounting needs it.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("mounting a test filesystem needs root, which CI has")
	}
	t.Skip("mounting a test filesystem needs root")
}

// Dir is t.TempDir opened to every user (the test's temp dirs are 0700),
// so that a kernel's user can reach a scratch dir made inside it.
func Dir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// LoopFS makes a sparse image of size bytes in a temp dir, runs mkfs (a
// program and its arguments, the image appended) on it and loop-mounts it
// with the mount options opts; it returns the mount point, unmounted when
// the test ends. A kernel that refuses the loop mount skips the test.
func LoopFS(t testing.TB, size int64, mkfs []string, fstype, opts string) string {
	t.Helper()
	Root(t)
	mkfsPath := Tool(t, mkfs[0])
	mountPath := Tool(t, "mount")
	umountPath := Tool(t, "umount")
	dir := Dir(t)
	image := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, size); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, mkfs[1:]...), image)
	if out, err := exec.Command(mkfsPath, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", mkfs[0], strings.Join(args, " "), err, out)
	}
	mountOpts := "loop"
	if opts != "" {
		mountOpts += "," + opts
	}
	if out, err := exec.Command(mountPath, "-t", fstype, "-o", mountOpts, image, mnt).CombinedOutput(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			// A kernel built without CONFIG_QUOTA refuses quota mounts.
			t.Skipf("this kernel refuses a loop mount of %s (-o %s; see dmesg): %v\n%s", fstype, mountOpts, err, out)
		}
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(umountPath, mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// ProjectQuotaFS is an ext4 with project quotas, enforced (prjquota).
func ProjectQuotaFS(t testing.TB) string {
	t.Helper()
	return LoopFS(t, 128<<20, []string{"mkfs.ext4", "-q", "-O", "quota,project"}, "ext4", "prjquota")
}

// XFSProjectQuotaFS is an XFS with project quotas, enforced (prjquota).
// mkfs.xfs refuses filesystems under 300 MB; the image is sparse.
func XFSProjectQuotaFS(t testing.TB) string {
	t.Helper()
	return LoopFS(t, 320<<20, []string{"mkfs.xfs", "-q"}, "xfs", "prjquota")
}

// Mounted says whether dir is a mount point of this process's namespace
// (a mount's target in /proc/self/mountinfo).
func Mounted(t testing.TB, dir string) bool {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
