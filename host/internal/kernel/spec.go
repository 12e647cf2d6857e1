package kernel

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/baiagent/baiagent/proto/sdk"
)

// pluginSpec is one plugin's container settings.
type pluginSpec struct {
	Plugin string
	Spec   sdk.ContainerSpec
	// Kinds are the device kinds of the plugin that the allocation uses,
	// in the plugin's order, and DeviceKinds maps each allocated device id
	// to its kind: attached devices are reported per kind, not per plugin.
	Kinds       []string
	DeviceKinds map[string]string
}

// kindOf is the device kind an attached device is reported under: the
// kind its id is allocated in, else the plugin's first allocated kind,
// else (a plugin that told no kinds) the plugin's name.
func (ps pluginSpec) kindOf(deviceID string) string {
	if kind, ok := ps.DeviceKinds[deviceID]; ok {
		return kind
	}
	if len(ps.Kinds) > 0 {
		return ps.Kinds[0]
	}
	return ps.Plugin
}

// mergedSpec is every plugin's settings combined (upstream deep-merges the
// plugins' docker args: dicts merge, lists extend, scalars overwrite).
type mergedSpec struct {
	Env            map[string]string
	Devices        []container.DeviceMapping
	DeviceRequests []container.DeviceRequest
	Mounts         []sdk.Mount
	GroupAdd       []string
	CpusetCpus     string
	MemoryBytes    int64
	MemorySwap     int64
	Runtime        string
	ResourceData   map[string]string
	// Attached are the plugins' attached devices by device kind ("cuda"),
	// the key of the allocations and the heartbeat's slots, as upstream's
	// attached_devices; never by plugin name.
	Attached map[string][]sdk.AttachedDevice
	// Networks are Docker networks the plugins want the container on, each
	// once, with the plugin that named it first.
	Networks []pluginNetwork
	// Hooks are the plugins' shared objects, each bind-mounted read-only
	// under HookDir and preloaded (upstream's get_hooks in mount_krunner).
	Hooks []hookMount
	// AllowedSyscalls are the syscalls the plugins need beyond Docker's
	// default seccomp profile, sorted, each once.
	AllowedSyscalls []string
	// SeccompProfile is the profile JSON with AllowedSyscalls added; empty
	// leaves the engine's default profile.
	SeccompProfile string
}

// HookDir is where plugin hooks appear in the container.
const HookDir = "/opt/kernel"

type hookMount struct {
	Plugin string
	Source string // absolute host path
	Target string // HookDir/<base name>
}

type pluginNetwork struct {
	Plugin string
	Name   string
}

// preload is the LD_PRELOAD value of the hooks, in merge order.
func (m mergedSpec) preload() string {
	targets := make([]string, len(m.Hooks))
	for i, h := range m.Hooks {
		targets[i] = h.Target
	}
	return strings.Join(targets, ":")
}

// mergeSpecs combines the plugins' specs in plugin-name order. Two plugins
// setting the same scalar (cpuset, memory, runtime) or the same environment
// variable to different values is a configuration conflict, reported
// rather than resolved silently.
func mergeSpecs(specs []pluginSpec) (mergedSpec, error) {
	sort.Slice(specs, func(i, j int) bool { return specs[i].Plugin < specs[j].Plugin })
	m := mergedSpec{Env: map[string]string{}, ResourceData: map[string]string{}, Attached: map[string][]sdk.AttachedDevice{}}
	envFrom := map[string]string{}
	scalar := func(field, plugin string, dst *string, v string, from *string) error {
		if v == "" {
			return nil
		}
		if *dst != "" && *dst != v {
			return fmt.Errorf("plugins %s and %s both set the container's %s (%q, %q)", *from, plugin, field, *dst, v)
		}
		*dst, *from = v, plugin
		return nil
	}
	var cpusetFrom, runtimeFrom, memFrom string
	for _, ps := range specs {
		s := ps.Spec
		for k, v := range s.Env {
			if old, ok := m.Env[k]; ok && old != v {
				return mergedSpec{}, fmt.Errorf("plugins %s and %s both set %s", envFrom[k], ps.Plugin, k)
			}
			m.Env[k], envFrom[k] = v, ps.Plugin
		}
		for _, d := range s.Devices {
			perms := d.CgroupPermissions
			if perms == "" {
				perms = "rwm"
			}
			target := d.ContainerPath
			if target == "" {
				target = d.HostPath
			}
			m.Devices = append(m.Devices, container.DeviceMapping{PathOnHost: d.HostPath, PathInContainer: target, CgroupPermissions: perms})
		}
		for _, r := range s.DeviceRequests {
			m.DeviceRequests = append(m.DeviceRequests, container.DeviceRequest{
				Driver: r.Driver, Count: r.Count, DeviceIDs: slices.Clone(r.DeviceIDs),
				Capabilities: r.Capabilities, Options: r.Options,
			})
		}
		if len(s.CDIDevices) > 0 {
			// Docker (API >= 1.44 with the CDI feature) resolves these
			// fully-qualified names through the "cdi" device driver.
			m.DeviceRequests = append(m.DeviceRequests, container.DeviceRequest{Driver: "cdi", DeviceIDs: slices.Clone(s.CDIDevices)})
		}
		m.Mounts = append(m.Mounts, s.Mounts...)
		for _, g := range s.GroupAdd {
			if !slices.Contains(m.GroupAdd, g) {
				m.GroupAdd = append(m.GroupAdd, g)
			}
		}
		if err := scalar("cpuset", ps.Plugin, &m.CpusetCpus, s.CpusetCpus, &cpusetFrom); err != nil {
			return mergedSpec{}, err
		}
		if err := scalar("runtime", ps.Plugin, &m.Runtime, s.Runtime, &runtimeFrom); err != nil {
			return mergedSpec{}, err
		}
		if s.MemoryBytes > 0 {
			if m.MemoryBytes > 0 && m.MemoryBytes != s.MemoryBytes {
				return mergedSpec{}, fmt.Errorf("plugins %s and %s both set the memory limit", memFrom, ps.Plugin)
			}
			m.MemoryBytes, memFrom = s.MemoryBytes, ps.Plugin
			// Upstream sets memswap equal to memory: no swap for kernels.
			m.MemorySwap = s.MemoryBytes
			if s.MemorySwapBytes > 0 {
				m.MemorySwap = s.MemorySwapBytes
			}
		}
		for k, v := range s.ResourceData {
			if strings.HasSuffix(k, "_SHARES") {
				return mergedSpec{}, fmt.Errorf("plugin %s: resource data key %q must not end in _SHARES", ps.Plugin, k)
			}
			if old, ok := m.ResourceData[k]; ok && old != v {
				return mergedSpec{}, fmt.Errorf("plugin %s: resource data key %q is already set by another plugin", ps.Plugin, k)
			}
			m.ResourceData[k] = v
		}
		for _, d := range s.AttachedDevices {
			kind := ps.kindOf(d.DeviceID)
			m.Attached[kind] = append(m.Attached[kind], d)
		}
		for _, n := range s.DockerNetworks {
			if !slices.ContainsFunc(m.Networks, func(p pluginNetwork) bool { return p.Name == n }) {
				m.Networks = append(m.Networks, pluginNetwork{Plugin: ps.Plugin, Name: n})
			}
		}
		for _, h := range s.Hooks {
			if err := m.addHook(ps.Plugin, h); err != nil {
				return mergedSpec{}, err
			}
		}
		for _, name := range s.AllowedSyscalls {
			if !validSyscallName(name) {
				return mergedSpec{}, fmt.Errorf("plugin %s: allowed syscall %q is not a syscall name", ps.Plugin, name)
			}
			if !slices.Contains(m.AllowedSyscalls, name) {
				m.AllowedSyscalls = append(m.AllowedSyscalls, name)
			}
		}
	}
	slices.Sort(m.AllowedSyscalls)
	if len(m.AllowedSyscalls) > 0 {
		profile, err := seccompProfile(m.AllowedSyscalls)
		if err != nil {
			return mergedSpec{}, err
		}
		m.SeccompProfile = profile
	}
	return m, nil
}

// addHook adds one plugin hook. The same file from two plugins is mounted
// once (upstream's already_injected_hooks); two files with one base name
// would need the same place in the container, which is a conflict.
func (m *mergedSpec) addHook(plugin, source string) error {
	if !filepath.IsAbs(source) {
		return fmt.Errorf("plugin %s: hook %q is not an absolute host path", plugin, source)
	}
	source = filepath.Clean(source)
	target := path.Join(HookDir, filepath.Base(source))
	for _, h := range m.Hooks {
		switch {
		case h.Source == source:
			return nil
		case h.Target == target:
			return fmt.Errorf("plugins %s and %s both have a hook named %s (%s, %s)", h.Plugin, plugin, filepath.Base(source), h.Source, source)
		}
	}
	m.Hooks = append(m.Hooks, hookMount{Plugin: plugin, Source: source, Target: target})
	return nil
}

// groupIDs turns numeric group names into the ADDITIONAL_GIDS value.
func groupIDs(groups []string) string {
	var ids []string
	for _, g := range groups {
		if _, err := strconv.Atoi(g); err == nil {
			ids = append(ids, g)
		}
	}
	return strings.Join(ids, ",")
}
