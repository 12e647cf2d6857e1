package scratch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch/scratchtest"
)

// loopsBackedBy lists the loop devices whose backing file is image.
func loopsBackedBy(t *testing.T, image string) []string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil && strings.TrimSuffix(string(raw), "\n") == image {
			devs = append(devs, f)
		}
	}
	return devs
}

// TestHostFile pins upstream's scratch-type "hostfile"
// (agent/scratch/utils.py create_loop_filesystem and
// destroy_loop_filesystem, agent/docker/agent.py prepare_scratch and
// _clean_scratch): <root>/<kernel-id>.img is a sparse file of scratch-size
// holding an ext4, loop-mounted on <root>/<kernel-id>, and removal
// unmounts it and deletes both.
func TestHostFile(t *testing.T) {
	scratchtest.Root(t)
	scratchtest.Tool(t, "mkfs.ext4")
	root := scratchtest.Dir(t)
	t.Cleanup(func() { _ = Remove(root, "k-file") })
	d, err := Spec{Kind: HostFile, Size: 16 << 20}.Create(context.Background(), root, "k-file", nobody, nobody)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
		t.Skipf("this kernel gives no loop device: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d.Image != filepath.Join(root, "k-file.img") {
		t.Fatalf("image %s", d.Image)
	}
	st, err := os.Stat(d.Image)
	if err != nil || st.Size() != 16<<20 {
		t.Fatalf("image: %v, %v; want a 16 MiB file", st, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(d.Base, &fs); err != nil {
		t.Fatal(err)
	}
	// ext4's own metadata and journal take a little of the 16 MiB.
	if size := int64(fs.Blocks) * fs.Bsize; fs.Type != unix.EXT4_SUPER_MAGIC || size > 16<<20 || size < 12<<20 {
		t.Fatalf("%s: filesystem %#x of %d bytes, want an ext4 of about 16 MiB", d.Base, fs.Type, size)
	}
	if !scratchtest.Mounted(t, d.Base) || len(loopsBackedBy(t, d.Image)) != 1 {
		t.Fatalf("%s is not mounted from one loop device of %s", d.Base, d.Image)
	}
	for _, dir := range []string{d.Config, d.Work} {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			t.Fatalf("%s: %v", dir, err)
		}
	}
	wantFull(t, writeAs(t, filepath.Join(d.Work, "big"), 32), "hostfile scratch")

	if err := Remove(root, "k-file"); err != nil {
		t.Fatal(err)
	}
	if scratchtest.Mounted(t, d.Base) {
		t.Errorf("%s still mounted", d.Base)
	}
	if devs := loopsBackedBy(t, d.Image); len(devs) != 0 {
		t.Errorf("loop devices still backed by the image: %v", devs)
	}
	for _, p := range []string{d.Base, d.Image} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
}

// TestHostFileErrors: a failed step names the image and the step, and
// leaves nothing behind.
func TestHostFileErrors(t *testing.T) {
	scratchtest.Root(t)
	scratchtest.Tool(t, "mkfs.ext4")
	root := t.TempDir()
	// mkfs.ext4 refuses a filesystem this small.
	_, err := Spec{Kind: HostFile, Size: 4 << 10}.Create(context.Background(), root, "k-tiny", -1, -1)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "k-tiny.img")) || !strings.Contains(err.Error(), "mkfs.ext4") {
		t.Fatalf("create: %v, want a mkfs.ext4 failure naming the image", err)
	}
	if _, err := (Spec{Kind: HostFile}).Create(context.Background(), root, "k-nosize", -1, -1); err == nil {
		t.Fatal("a hostfile scratch without a size was made")
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
