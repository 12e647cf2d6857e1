// Package scratch manages a kernel's scratch directory,
// <scratch-root>/<kernel-id>/{config,work} (a plain directory, possibly
// under a project quota, a loop-mounted image or a tmpfs), and the files in config/ that
// describe the kernel: resource.txt (upstream's KernelResourceSpec),
// environ.txt and recovery.json (what the agent needs to rebuild its
// registry after a restart).
package scratch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shopspring/decimal"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
	"github.com/baiagent/baiagent/proto/sdk"
)

// File names inside config/.
const (
	ResourceFile = "resource.txt"
	EnvironFile  = "environ.txt"
	RecoveryFile = "recovery.json"
)

// Dirs are one kernel's scratch paths on the host.
type Dirs struct {
	Base   string // <root>/<kernel-id>
	Config string // mounted read-only at /home/config
	Work   string // mounted read-write at /home/work
	// Tmp is <root>/<kernel-id>_tmp, upstream's tmp dir: with scratch-type
	// memory a tmpfs mounted at /tmp in the container; unused otherwise.
	Tmp string
	// Image is <root>/<kernel-id>.img, upstream's file that holds a
	// hostfile scratch's filesystem; unused otherwise.
	Image string
}

// For returns the paths of a kernel's scratch dir without touching disk.
func For(root, kernelID string) (Dirs, error) {
	if kernelID == "" || kernelID != filepath.Base(kernelID) || strings.HasPrefix(kernelID, ".") {
		return Dirs{}, fmt.Errorf("kernel id %q cannot name a scratch dir", kernelID)
	}
	base := filepath.Join(root, kernelID)
	return Dirs{Base: base, Config: filepath.Join(base, "config"), Work: filepath.Join(base, "work"), Tmp: base + "_tmp", Image: base + ".img"}, nil
}

// ErrExists means the kernel's scratch dir is already there.
var ErrExists = errors.New("scratch dir already exists")

// Kind is container.scratch-type, as far as baiagent implements it.
type Kind string

// The scratch types (upstream's ScratchType, less k8s-nfs).
const (
	// HostDir is a plain directory under the scratch root.
	HostDir Kind = "hostdir"
	// HostFile is an ext4 filesystem in <root>/<kernel-id>.img of
	// scratch-size, loop-mounted on the scratch dir.
	HostFile Kind = "hostfile"
	// Memory makes the scratch dir and the tmp dir tmpfs mounts.
	Memory Kind = "memory"
)

// Spec says how each kernel's scratch dir is made.
type Spec struct {
	// Kind is the scratch type; empty means HostDir.
	Kind Kind
	// Size is container.scratch-size: the size of a HostFile image, and
	// the block limit of a HostDir scratch dir when Quota is set.
	Size int64
	// Quota, with HostDir and a Size, gives each scratch dir a project
	// quota of Size (see PlanSizeLimit).
	Quota *ProjectQuota
}

// Create makes a kernel's hostdir scratch dir without a limit.
func Create(root, kernelID string, uid, gid int) (Dirs, error) {
	return Spec{}.Create(context.Background(), root, kernelID, uid, gid)
}

// MemorySize is the size of each tmpfs of a memory scratch: upstream's
// prepare_scratch mounts 64 MiB whatever scratch-size says
// (agent/docker/agent.py, create_scratch_filesystem).
const MemorySize = 64 << 20

// Create makes the kernel's scratch dir as s says; work/ is owned by
// uid:gid so the kernel's user can write there. A negative uid or gid
// keeps ours.
func (s Spec) Create(ctx context.Context, root, kernelID string, uid, gid int) (Dirs, error) {
	d, err := For(root, kernelID)
	if err != nil {
		return Dirs{}, err
	}
	switch s.Kind {
	case "", HostDir, Memory:
	case HostFile:
		if s.Size <= 0 {
			return Dirs{}, fmt.Errorf("scratch type hostfile needs a scratch size, got %d", s.Size)
		}
	default:
		return Dirs{}, fmt.Errorf("scratch type %q is not supported", s.Kind)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Dirs{}, fmt.Errorf("scratch root: %w", err)
	}
	if err := os.Mkdir(d.Base, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Dirs{}, fmt.Errorf("%w: %s", ErrExists, d.Base)
		}
		return Dirs{}, fmt.Errorf("scratch dir: %w", err)
	}
	fail := func(err error) (Dirs, error) {
		_ = Remove(root, kernelID)
		return Dirs{}, err
	}
	switch {
	case s.Kind == Memory:
		if err := os.Mkdir(d.Tmp, 0o755); err != nil {
			return fail(fmt.Errorf("scratch tmp dir: %w", err))
		}
		for _, dir := range []string{d.Base, d.Tmp} {
			opts := fmt.Sprintf("size=%d", MemorySize)
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return fail(fmt.Errorf("mount a tmpfs on %s (container.scratch-type memory): %w", dir, err))
			}
		}
		// The tmpfs roots: the base as a directory, /tmp as /tmp is.
		if err := os.Chmod(d.Base, 0o755); err != nil {
			return fail(fmt.Errorf("scratch dir: %w", err))
		}
		if err := os.Chmod(d.Tmp, 0o777|os.ModeSticky); err != nil {
			return fail(fmt.Errorf("scratch tmp dir: %w", err))
		}
	case s.Kind == HostFile:
		if err := mountImage(ctx, d.Image, d.Base, s.Size); err != nil {
			return fail(err)
		}
	case s.Quota != nil && s.Size > 0:
		// Before config/ and work/ exist, so that they inherit the project.
		if err := s.Quota.limit(d.Base, kernelID, s.Size); err != nil {
			return fail(err)
		}
	}
	for _, dir := range []string{d.Config, d.Work} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(fmt.Errorf("scratch dir: %w", err))
		}
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(d.Work, uid, gid); err != nil {
			return fail(fmt.Errorf("scratch work dir owner: %w", err))
		}
	}
	return d, nil
}

// Remove deletes a kernel's scratch dir, tmp dir and image, whatever the
// scratch type that made them: it lifts a project quota, unmounts a tmpfs
// or loop filesystem first, and missing pieces are not an error. It needs
// no configuration, so a restarted agent cleans up what an earlier one made.
func Remove(root, kernelID string) error {
	d, err := For(root, kernelID)
	if err != nil {
		return err
	}
	if err := clearProjectQuota(d.Base); err != nil {
		return err
	}
	for _, dir := range []string{d.Base, d.Tmp} {
		// EINVAL: not a mount point (a hostdir scratch); ENOENT: gone.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove scratch dir: %w", err)
		}
	}
	if err := os.Remove(d.Image); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove scratch image: %w", err)
	}
	return nil
}

// Mount is one bind mount, written into MOUNTS as src:dst:mode.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

func (m Mount) String() string {
	mode := "rw"
	if m.ReadOnly {
		mode = "ro"
	}
	return m.Source + ":" + m.Target + ":" + mode
}

// ResourceSpec is what resource.txt records (upstream's
// KernelResourceSpec.write_to_string).
type ResourceSpec struct {
	ScratchSizeBytes int64
	Mounts           []Mount
	// Slots is the requested amount per slot.
	Slots map[string]decimal.Decimal
	// Allocation is kind -> slot -> device -> amount.
	Allocation map[string]map[string]map[string]decimal.Decimal
	// BytesSlots names the slots counted in bytes, written as binary sizes.
	BytesSlots map[string]bool
	// PluginData are the plugins' own KEY=VALUE lines.
	PluginData map[string]string
}

// Lines returns the KEY=VALUE data of resource.txt.
func (s ResourceSpec) Lines() (map[string]string, error) {
	data := map[string]string{}
	for k, v := range s.PluginData {
		if strings.HasSuffix(k, "_SHARES") {
			return nil, fmt.Errorf("plugin resource data key %q must not end in _SHARES", k)
		}
		data[k] = v
	}
	data["SCRATCH_SIZE"] = fmt.Sprintf("%dm", s.ScratchSizeBytes>>20)
	mounts := make([]string, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		mounts = append(mounts, m.String())
	}
	data["MOUNTS"] = strings.Join(mounts, ",")
	slots := make(map[string]string, len(s.Slots))
	for k, v := range s.Slots {
		slots[k] = v.String()
	}
	raw, err := json.Marshal(slots)
	if err != nil {
		return nil, fmt.Errorf("SLOTS: %w", err)
	}
	data["SLOTS"] = string(raw)
	data["UNIFIED_DEVICES"] = "[]"
	for _, kind := range sortedKeys(s.Allocation) {
		for slot, amounts := range s.Allocation[kind] {
			if len(amounts) == 0 {
				continue
			}
			key, value := sdk.FormatShares(slot, amounts, s.BytesSlots[slot])
			data[key] = value
		}
	}
	return data, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// WriteResourceFile writes config/resource.txt.
func WriteResourceFile(d Dirs, spec ResourceSpec) error {
	data, err := spec.Lines()
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := sdk.WriteResourceData(&b, data); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(d.Config, ResourceFile), []byte(b.String()), 0o644)
}

// AppendContainerID adds the CID= line once the container exists, as
// upstream does after docker create.
func AppendContainerID(d Dirs, containerID string) error {
	if containerID == "" || strings.ContainsAny(containerID, "\r\n=") {
		return fmt.Errorf("container id %q cannot be recorded", containerID)
	}
	f, err := os.OpenFile(filepath.Join(d.Config, ResourceFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append CID: %w", err)
	}
	_, werr := f.WriteString("CID=" + containerID + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("append CID: %w", werr)
	}
	return nil
}

// ReadResourceFile parses config/resource.txt.
func ReadResourceFile(d Dirs) (map[string]string, error) {
	f, err := os.Open(filepath.Join(d.Config, ResourceFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := sdk.ParseResourceData(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return data, nil
}

// WriteEnviron writes config/environ.txt, KEY=VALUE lines sorted by key.
func WriteEnviron(d Dirs, env map[string]string) error {
	var b strings.Builder
	for _, k := range sortedKeys(env) {
		v := env[k]
		if k == "" || strings.ContainsAny(k, "=\n") || strings.Contains(v, "\n") {
			return fmt.Errorf("environment variable %q cannot be written to environ.txt", k)
		}
		b.WriteString(k + "=" + v + "\n")
	}
	return atomicfile.Write(filepath.Join(d.Config, EnvironFile), []byte(b.String()), 0o644)
}
