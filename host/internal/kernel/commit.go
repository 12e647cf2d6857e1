package kernel

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Commit statuses of get_commit_status (upstream's CommitStatus).
const (
	CommitReady   = "ready"
	CommitOngoing = "ongoing"
)

// Errors of commit requests.
var (
	ErrCommitOngoing = errors.New("the kernel is already being committed")
	ErrInvalidPath   = errors.New("invalid commit path")
	ErrNoCommitPath  = errors.New("image-commit-path is not configured")
	ErrInvalidCommit = errors.New("invalid commit request")
)

const (
	commitLockDirName = "lock"
	commitFileMode    = os.FileMode(0o644)
	commitDirMode     = os.FileMode(0o755)
)

// blankedImageLabels are the container's identity labels, emptied in a
// committed image: a container of that image would otherwise look like
// one of this agent's kernels.
func blankedImageLabels() []string {
	return []string{LabelAgentID, LabelOwner, LabelKernelID, LabelSessionID, LabelScratchRoot}
}

// CommitRequest is upstream's commit(kernel_id, subdir, canonical,
// filename, extra_labels).
type CommitRequest struct {
	KernelID string
	// Subdir is one path component under image-commit-path (the manager
	// sends the user's email).
	Subdir string
	// Canonical tags the new image ("repo:tag", "repo" meaning latest);
	// empty leaves it untagged.
	Canonical string
	// Filename, when set, is one path component: the image is saved as a
	// gzipped tar at <image-commit-path>/<Subdir>/<Filename> and then
	// removed from Docker, as upstream does.
	Filename    string
	ExtraLabels map[string]string
}

// Commit is a commit whose lock is taken; Run does the work.
type Commit struct {
	m           *Manager
	req         CommitRequest
	containerID string
	// Path is the tar's path, empty without a filename.
	Path string
	lock *os.File
}

// pathComponent accepts one file name that stays inside its directory.
func pathComponent(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidPath, what)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %s %q names a directory, not an entry of one", ErrInvalidPath, what, name)
	case filepath.IsAbs(name):
		return fmt.Errorf("%w: %s %q is an absolute path", ErrInvalidPath, what, name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%w: %s %q must be a single path component (no separators)", ErrInvalidPath, what, name)
	case len(name) > 255:
		return fmt.Errorf("%w: %s is longer than 255 bytes", ErrInvalidPath, what)
	}
	return nil
}

// commitDirs are a subdir's directory and a kernel's lock file in it.
func (m *Manager) commitDirs(kernelID, subdir string) (dir, lock string, err error) {
	if m.cfg.CommitPath == "" {
		return "", "", ErrNoCommitPath
	}
	if err := pathComponent("subdir", subdir); err != nil {
		return "", "", err
	}
	dir = filepath.Join(m.cfg.CommitPath, subdir)
	return dir, filepath.Join(dir, commitLockDirName, kernelID), nil
}

// StartCommit checks the request and takes the kernel's commit lock
// (<image-commit-path>/<subdir>/lock/<kernel-id>, as upstream, held with
// flock so that a lock left by a crashed agent does not count); Run then
// commits. A second commit of the same kernel into the same subdir while
// one runs fails with ErrCommitOngoing.
func (m *Manager) StartCommit(req CommitRequest) (*Commit, error) {
	dir, lockPath, err := m.commitDirs(req.KernelID, req.Subdir)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	k, ok := m.reg[req.KernelID]
	var containerID string
	var state state
	if ok {
		containerID, state = k.containerID, k.state
	}
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrKernelNotFound, req.KernelID)
	}
	if state != stateRunning {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, req.KernelID, state)
	}
	c := &Commit{m: m, req: req, containerID: containerID}
	if req.Filename != "" {
		if err := pathComponent("filename", req.Filename); err != nil {
			return nil, err
		}
		if req.Filename == commitLockDirName {
			return nil, fmt.Errorf("%w: filename %q is the lock directory's name", ErrInvalidPath, req.Filename)
		}
		c.Path = filepath.Join(dir, req.Filename)
	}
	for key, value := range req.ExtraLabels {
		if key == "" || strings.ContainsAny(key, "\r\n=") || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("%w: label %q=%q (keys must be non-empty without '=', neither may span lines)", ErrInvalidCommit, key, value)
		}
	}
	if err := os.MkdirAll(filepath.Dir(lockPath), commitDirMode); err != nil {
		return nil, fmt.Errorf("commit dir: %w", err)
	}
	f, err := lockFile(lockPath)
	if err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: kernel %s into %s", ErrCommitOngoing, req.KernelID, req.Subdir)
		}
		return nil, fmt.Errorf("commit lock %s: %w", lockPath, err)
	}
	c.lock = f
	return c, nil
}

// lockFile creates (or takes over a stale) lock file and holds its flock.
// A holder removes the file before unlocking, so a lock won on a file that
// is no longer at path is retried.
func lockFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, commitFileMode)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			return nil, err
		}
		held, herr := f.Stat()
		now, perr := os.Stat(path)
		if herr == nil && perr == nil && os.SameFile(held, now) {
			return f, nil
		}
		_ = f.Close()
	}
}

// Run commits the container to an image (tagged Canonical, with the
// extra labels) and, with a filename, saves it as a gzipped tar and
// removes the image. The lock is released when it returns.
func (c *Commit) Run(ctx context.Context) (imageID string, err error) {
	defer c.unlock()
	var changes []string
	for _, key := range blankedImageLabels() {
		changes = append(changes, "LABEL "+dockerfileQuote(key)+"="+dockerfileQuote(""))
	}
	keys := make([]string, 0, len(c.req.ExtraLabels))
	for key := range c.req.ExtraLabels {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		changes = append(changes, "LABEL "+dockerfileQuote(key)+"="+dockerfileQuote(c.req.ExtraLabels[key]))
	}
	engine := c.m.cfg.Engine
	imageID, err = engine.ContainerCommit(ctx, c.containerID, CommitOptions{
		Reference: c.req.Canonical, Changes: changes,
		Comment: "baiagent commit of kernel " + c.req.KernelID,
	})
	if err != nil {
		return "", fmt.Errorf("commit kernel %s: %w", c.req.KernelID, err)
	}
	c.m.log.Info().Str("kernel", c.req.KernelID).Str("image", imageID).Str("canonical", c.req.Canonical).Msg("kernel committed")
	if c.Path == "" {
		return imageID, nil
	}
	saveErr := c.save(ctx, imageID)
	// As upstream: with a file, the file is the result.
	ref := imageID
	if c.req.Canonical != "" {
		ref = c.req.Canonical
	}
	if err := engine.ImageRemove(context.WithoutCancel(ctx), ref); err != nil {
		c.m.log.Warn().Err(err).Str("image", imageID).Msg("removing a committed image after saving it")
	}
	if saveErr != nil {
		return "", saveErr
	}
	return imageID, nil
}

// save writes the image as a gzipped tar, under a temporary name until it
// is complete.
func (c *Commit) save(ctx context.Context, imageID string) error {
	rc, err := c.m.cfg.Engine.ImageSave(ctx, imageID)
	if err != nil {
		return fmt.Errorf("save image %s: %w", imageID, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(c.Path), "."+filepath.Base(c.Path)+".*")
	if err != nil {
		return fmt.Errorf("save image: %w", err)
	}
	zw := gzip.NewWriter(tmp)
	_, werr := io.Copy(zw, rc)
	if cerr := zw.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = tmp.Chmod(commitFileMode)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), c.Path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("save image to %s: %w", c.Path, werr)
	}
	return nil
}

// unlock removes the lock file and then drops the lock, so that a waiting
// status check never sees a free lock with the file still there.
func (c *Commit) unlock() {
	if c.lock == nil {
		return
	}
	_ = os.Remove(c.lock.Name())
	_ = c.lock.Close()
	c.lock = nil
}

// CommitStatus is get_commit_status: ongoing while a commit of the kernel
// into subdir holds its lock.
func (m *Manager) CommitStatus(kernelID, subdir string) (string, error) {
	m.mu.Lock()
	_, ok := m.reg[kernelID]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	_, lockPath, err := m.commitDirs(kernelID, subdir)
	if err != nil {
		return "", err
	}
	if lockHeld(lockPath) {
		return CommitOngoing, nil
	}
	return CommitReady, nil
}

// OngoingCommits lists the kernels with a commit in progress in any
// subdir (upstream reports them to Redis as kernel.<id>.commit).
func (m *Manager) OngoingCommits() []string {
	if m.cfg.CommitPath == "" {
		return nil
	}
	locks, _ := filepath.Glob(filepath.Join(m.cfg.CommitPath, "*", commitLockDirName, "*"))
	seen := map[string]bool{}
	var out []string
	for _, l := range locks {
		if id := filepath.Base(l); !seen[id] && lockHeld(l) {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// lockHeld reports whether someone holds the flock of a lock file.
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// dockerfileQuote quotes a LABEL key or value for a commit change line.
func dockerfileQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
