// Package scratch manages a kernel's scratch directory,
// <scratch-root>/<kernel-id>/{config,work}, and the files in config/ that
// describe the kernel: resource.txt (upstream's KernelResourceSpec),
// environ.txt and recovery.json (what the agent needs to rebuild its
// registry after a restart).
package scratch

import (
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
}

// For returns the paths of a kernel's scratch dir without touching disk.
func For(root, kernelID string) (Dirs, error) {
	if kernelID == "" || kernelID != filepath.Base(kernelID) || strings.HasPrefix(kernelID, ".") {
		return Dirs{}, fmt.Errorf("kernel id %q cannot name a scratch dir", kernelID)
	}
	base := filepath.Join(root, kernelID)
	return Dirs{Base: base, Config: filepath.Join(base, "config"), Work: filepath.Join(base, "work"), Tmp: base + "_tmp"}, nil
}

// ErrExists means the kernel's scratch dir is already there.
var ErrExists = errors.New("scratch dir already exists")

// Create makes the kernel's scratch dir; work/ is owned by uid:gid so the
// kernel's user can write there. A negative uid or gid keeps ours.
func Create(root, kernelID string, uid, gid int) (Dirs, error) {
	return create(root, kernelID, uid, gid, false)
}

// MemorySize is the size of each tmpfs of a memory scratch: upstream's
// prepare_scratch mounts 64 MiB whatever scratch-size says
// (agent/docker/agent.py, create_scratch_filesystem).
const MemorySize = 64 << 20

// CreateMemory is Create for container.scratch-type = "memory", as
// upstream: the scratch dir and the tmp dir are each a tmpfs of
// MemorySize, so nothing the kernel writes there reaches the host's disk.
func CreateMemory(root, kernelID string, uid, gid int) (Dirs, error) {
	return create(root, kernelID, uid, gid, true)
}

func create(root, kernelID string, uid, gid int, memory bool) (Dirs, error) {
	d, err := For(root, kernelID)
	if err != nil {
		return Dirs{}, err
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
	if memory {
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

// Remove deletes a kernel's scratch dir and tmp dir, unmounting them first
// when they are a memory scratch's tmpfs; missing ones are not an error.
func Remove(root, kernelID string) error {
	d, err := For(root, kernelID)
	if err != nil {
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
