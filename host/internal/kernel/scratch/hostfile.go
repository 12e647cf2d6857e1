package scratch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// loopAttempts bounds the retries when another process takes the free
// loop device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
const loopAttempts = 16

// MkfsExt4 finds mkfs.ext4 (e2fsprogs): on PATH, else in the sbin dirs a
// daemon's PATH may lack (upstream runs /sbin/mkfs.ext4).
func MkfsExt4() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", errors.New("mkfs.ext4 not found (install e2fsprogs)")
}

// mountImage is upstream's create_loop_filesystem (agent/scratch/utils.py):
// a sparse file of size at image, an ext4 made in it, mounted on dir. The
// loop device is attached here with LOOP_CONFIGURE rather than by
// mount -o loop, so that the device and its autoclear flag are set in one
// step (a crash cannot leave a device that outlives its mount) and a race
// for a free device is retried instead of failing.
func mountImage(ctx context.Context, image, dir string, size int64) error {
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scratch image %s: create: %w", image, err)
	}
	defer f.Close() // the loop device holds its own reference
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("scratch image %s: truncate to %d bytes: %w", image, size, err)
	}
	// As upstream: refuse a filesystem that would allocate the whole size.
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("scratch image %s: stat: %w", image, err)
	}
	if st.Blocks != 0 {
		return fmt.Errorf("scratch image %s: the scratch root's filesystem does not make sparse files", image)
	}
	mkfs, err := MkfsExt4()
	if err != nil {
		return fmt.Errorf("scratch image %s: %w", image, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, mkfs, "-q", image)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scratch image %s: mkfs.ext4: %w: %s", image, err, strings.TrimSpace(out.String()))
	}
	loop, err := attachLoop(f, image)
	if err != nil {
		return err
	}
	// An autoclear device is freed when its last opener goes: ours is held
	// until the mount holds the device.
	defer loop.Close()
	if err := unix.Mount(loop.Name(), dir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("scratch image %s: mount %s on %s: %w", image, loop.Name(), dir, err)
	}
	return nil
}

// attachLoop binds a free loop device to f with LO_FLAGS_AUTOCLEAR and
// returns the device, open.
func attachLoop(f *os.File, image string) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("scratch image %s: attach a loop device: %w", image, err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("scratch image %s: find a free loop device: %w", image, err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("scratch image %s: attach a loop device: %w", image, err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("scratch image %s: LOOP_CONFIGURE on %s: %w", image, dev.Name(), err)
		}
		// Another process bound it first; ask for the next free one.
	}
	return nil, fmt.Errorf("scratch image %s: no free loop device after %d attempts", image, loopAttempts)
}
