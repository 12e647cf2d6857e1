package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
)

// System is every effect the watcher has on the host. The server never
// touches the host except through it, so tests run against a fake.
type System interface {
	// Systemctl runs `systemctl args...` and returns its standard output,
	// also when it exits non-zero (`is-active` prints "inactive" and exits 3).
	Systemctl(ctx context.Context, args ...string) (stdout string, err error)
	// Mount runs `mount -t fsType [-o options] source target`; options may
	// be empty.
	Mount(ctx context.Context, fsType, options, source, target string) (stdout string, err error)
	// Unmount runs `umount target`.
	Unmount(ctx context.Context, target string) (stdout string, err error)
	// Shutdown powers the node off (`shutdown -h now`).
	Shutdown(ctx context.Context) error
	// ProcMounts returns the contents of /proc/mounts.
	ProcMounts() ([]byte, error)
	// ReadFile reads a whole file (fstab).
	ReadFile(path string) ([]byte, error)
	// WriteFile replaces an existing file's contents, keeping its mode.
	WriteFile(path string, data []byte) error
	// Mkdir creates one directory (not its parents); created is false when
	// it already existed.
	Mkdir(path string) (created bool, err error)
	// Rmdir removes a directory if it is empty.
	Rmdir(path string) error
}

// CommandError is a command that could not start or exited non-zero.
type CommandError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// maxCommandOutput bounds what is kept of a command's stdout and stderr.
const maxCommandOutput = 64 << 10

// OSSystem is the real System: it execs the commands directly (no shell)
// and uses the local filesystem. The watcher runs as root, so unlike
// upstream it does not go through sudo.
type OSSystem struct {
	// Paths of the commands; empty means look them up in PATH.
	SystemctlPath, MountPath, UmountPath, ShutdownPath string
	// ProcMountsPath defaults to /proc/mounts.
	ProcMountsPath string
}

var _ System = OSSystem{}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s OSSystem) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	stdout := &limitedBuffer{max: maxCommandOutput}
	stderr := &limitedBuffer{max: maxCommandOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return stdout.String(), &CommandError{Args: append([]string{name}, args...), Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

func (s OSSystem) Systemctl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, orDefault(s.SystemctlPath, "systemctl"), args...)
}

func (s OSSystem) Mount(ctx context.Context, fsType, options, source, target string) (string, error) {
	return s.run(ctx, orDefault(s.MountPath, "mount"), mountArgs(fsType, options, source, target)...)
}

// mountArgs is the argument list of mount(8); "--" ends the options, so a
// source can never be read as one.
func mountArgs(fsType, options, source, target string) []string {
	args := []string{"-t", fsType}
	if options != "" {
		args = append(args, "-o", options)
	}
	return append(args, "--", source, target)
}

func (s OSSystem) Unmount(ctx context.Context, target string) (string, error) {
	return s.run(ctx, orDefault(s.UmountPath, "umount"), "--", target)
}

func (s OSSystem) Shutdown(ctx context.Context) error {
	_, err := s.run(ctx, orDefault(s.ShutdownPath, "shutdown"), "-h", "now")
	return err
}

func (s OSSystem) ProcMounts() ([]byte, error) {
	return os.ReadFile(orDefault(s.ProcMountsPath, "/proc/mounts"))
}

func (OSSystem) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// WriteFile writes a temporary file beside path and renames it over path,
// so a crash never leaves a half-written fstab.
func (OSSystem) WriteFile(path string, data []byte) error {
	// Replace the file a symlink points to, not the link.
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return atomicfile.WriteDurable(path, data, info.Mode().Perm())
}

func (OSSystem) Mkdir(path string) (bool, error) {
	err := os.Mkdir(path, 0o755)
	if errors.Is(err, fs.ErrExist) {
		if info, statErr := os.Stat(path); statErr == nil && info.IsDir() {
			return false, nil
		}
		return false, err
	}
	return err == nil, err
}

// Rmdir uses rmdir(2), which never removes a file or a non-empty directory.
func (OSSystem) Rmdir(path string) error {
	if err := syscall.Rmdir(path); err != nil {
		return &fs.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
