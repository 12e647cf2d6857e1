package cpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostReader is the only code that touches the host. Every path is under an
// injectable root so tests run on fixture trees; the two fallbacks that are
// not files (the scheduler affinity mask and the CPU count) are functions
// for the same reason.
type hostReader struct {
	sysfsRoot  string
	procfsRoot string
	cgroupRoot string
	affinity   func() ([]int, error)
	numCPU     func() int
	// statfs gives a mounted filesystem's used and total bytes.
	statfs func(mountPoint string) (used, total uint64, err error)
}

func newHostReader(sysfsRoot, procfsRoot, cgroupRoot string) hostReader {
	return hostReader{
		sysfsRoot:  sysfsRoot,
		procfsRoot: procfsRoot,
		cgroupRoot: cgroupRoot,
		affinity:   schedAffinity,
		numCPU:     runtime.NumCPU,
		statfs:     statfsUsage,
	}
}

// statfsUsage is upstream's os.statvfs arithmetic: used is everything but
// what unprivileged users may still take (f_blocks - f_bavail), so the
// root reserve counts as used.
func statfsUsage(mountPoint string) (used, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(mountPoint, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", mountPoint, err)
	}
	frsize := uint64(st.Frsize)
	if frsize == 0 {
		frsize = uint64(st.Bsize)
	}
	return frsize * (st.Blocks - st.Bavail), frsize * st.Blocks, nil
}

// diskUsage is one block device's use.
type diskUsage struct {
	device      string
	used, total uint64
}

// disks measures every filesystem that counts for node disk (DiskMounts),
// each device once even when it is mounted at several places (bind
// mounts), in mount order. A mount that cannot be measured is skipped.
func (h hostReader) disks() ([]diskUsage, []error, error) {
	filesystems, err := os.ReadFile(filepath.Join(h.procfsRoot, "filesystems"))
	if err != nil {
		return nil, nil, fmt.Errorf("read filesystems: %w", err)
	}
	mounts, err := os.ReadFile(filepath.Join(h.procfsRoot, "self", "mounts"))
	if err != nil {
		return nil, nil, fmt.Errorf("read mounts: %w", err)
	}
	var out []diskUsage
	var problems []error
	seen := map[string]bool{}
	for _, m := range DiskMounts(filesystems, mounts) {
		if seen[m.Device] {
			continue
		}
		used, total, err := h.statfs(m.MountPoint)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		seen[m.Device] = true
		out = append(out, diskUsage{device: m.Device, used: used, total: total})
	}
	return out, problems, nil
}

// nodeNet sums the host's interfaces, loopback included, as psutil's
// net_io_counters that upstream reports.
func (h hostReader) nodeNet() (NetDev, error) {
	data, err := os.ReadFile(filepath.Join(h.procfsRoot, "net", "dev"))
	if err != nil {
		return NetDev{}, fmt.Errorf("read net/dev: %w", err)
	}
	return ParseNetDev(data, true)
}

// containerNet reads the network namespace of a container's init process
// through /proc/<pid>/net/dev, loopback excluded, as upstream's
// read_proc_net_dev.
func (h hostReader) containerNet(pid int) (NetDev, error) {
	if pid <= 0 {
		return NetDev{}, fmt.Errorf("no container pid")
	}
	data, err := os.ReadFile(filepath.Join(h.procfsRoot, strconv.Itoa(pid), "net", "dev"))
	if err != nil {
		return NetDev{}, fmt.Errorf("read net/dev of pid %d: %w", pid, err)
	}
	return ParseNetDev(data, false)
}

// schedAffinity is the agent process's CPU mask, upstream's second choice.
func schedAffinity() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cores []int
	for c := 0; c < len(set)*64 && len(cores) < set.Count(); c++ {
		if set.IsSet(c) {
			cores = append(cores, c)
		}
	}
	return cores, nil
}

// usableCores returns the cores Docker may use and where that came from.
// Docker's parent cgroup cpuset comes first (upstream agent/vendor/linux.py:
// v2 cpuset.cpus.effective, v1 cpuset.effective_cpus, under docker/ or
// system.slice/), then the affinity mask, then the CPU count. A missing or
// empty cpuset file moves on to the next source; a malformed one is an
// error, since guessing would hand out cores Docker cannot use.
func (h hostReader) usableCores() ([]int, string, error) {
	candidates := []string{
		filepath.Join(h.cgroupRoot, "docker", "cpuset.cpus.effective"),
		filepath.Join(h.cgroupRoot, "system.slice", "cpuset.cpus.effective"),
		filepath.Join(h.cgroupRoot, "cpuset", "docker", "cpuset.effective_cpus"),
		filepath.Join(h.cgroupRoot, "cpuset", "system.slice", "cpuset.effective_cpus"),
	}
	for _, path := range candidates {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("read docker cpuset: %w", err)
		}
		cores, err := ParseCPUList(string(data))
		if err != nil {
			return nil, "", fmt.Errorf("docker cpuset %s: %w", path, err)
		}
		if len(cores) > 0 {
			return cores, path, nil
		}
	}
	if cores, err := h.affinity(); err == nil && len(cores) > 0 {
		return cores, "sched_getaffinity", nil
	}
	n := h.numCPU()
	cores := make([]int, n)
	for i := range cores {
		cores[i] = i
	}
	return cores, "cpu count", nil
}

// numaNodes maps each core to its NUMA node from sysfs: node*/cpulist, then
// cpu/cpuN/nodeM links for cores not listed. Cores found in neither are on
// node 0, as upstream does without libnuma.
func (h hostReader) numaNodes(cores []int) (map[int]int, error) {
	nodeOf := make(map[int]int, len(cores))
	nodeDirs, err := filepath.Glob(filepath.Join(h.sysfsRoot, "devices", "system", "node", "node*"))
	if err != nil {
		return nil, fmt.Errorf("list numa nodes: %w", err)
	}
	for _, dir := range nodeDirs {
		node, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "node"))
		if err != nil {
			continue // e.g. "node_online"-style entries, not a node
		}
		data, err := os.ReadFile(filepath.Join(dir, "cpulist"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("numa node %d: %w", node, err)
		}
		nodeCores, err := ParseCPUList(string(data))
		if err != nil {
			return nil, fmt.Errorf("numa node %d cpulist: %w", node, err)
		}
		for _, c := range nodeCores {
			nodeOf[c] = node
		}
	}
	for _, c := range cores {
		if _, ok := nodeOf[c]; ok {
			continue
		}
		nodeOf[c] = 0
		links, _ := filepath.Glob(filepath.Join(h.sysfsRoot, "devices", "system", "cpu", "cpu"+strconv.Itoa(c), "node*"))
		for _, link := range links {
			if node, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(link), "node")); err == nil {
				nodeOf[c] = node
				break
			}
		}
	}
	return nodeOf, nil
}

// memoryInfo is the node's memory as the plugin sees it.
type memoryInfo struct {
	total     uint64 // MemTotal
	available uint64 // MemAvailable
	// usable is min(MemTotal, Docker's parent cgroup limit).
	usable      uint64
	limitSource string
}

// memory reads /proc/meminfo and caps MemTotal by the memory limit of
// Docker's parent cgroup (the same docker/ or system.slice/ parents as the
// cpuset), since no container can use more than that.
func (h hostReader) memory() (memoryInfo, error) {
	data, err := os.ReadFile(filepath.Join(h.procfsRoot, "meminfo"))
	if err != nil {
		return memoryInfo{}, fmt.Errorf("read meminfo: %w", err)
	}
	fields, err := ParseMeminfo(data)
	if err != nil {
		return memoryInfo{}, err
	}
	total, ok := fields["MemTotal"]
	if !ok || total == 0 {
		return memoryInfo{}, fmt.Errorf("meminfo has no MemTotal")
	}
	info := memoryInfo{total: total, available: fields["MemAvailable"], usable: total, limitSource: "meminfo"}
	candidates := []string{
		filepath.Join(h.cgroupRoot, "docker", "memory.max"),
		filepath.Join(h.cgroupRoot, "system.slice", "memory.max"),
		filepath.Join(h.cgroupRoot, "memory", "docker", "memory.limit_in_bytes"),
		filepath.Join(h.cgroupRoot, "memory", "system.slice", "memory.limit_in_bytes"),
	}
	for _, path := range candidates {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return memoryInfo{}, fmt.Errorf("read docker memory limit: %w", err)
		}
		limit, unlimited, err := ParseCgroupLimit(data)
		if err != nil {
			return memoryInfo{}, fmt.Errorf("docker memory limit %s: %w", path, err)
		}
		if !unlimited && limit < info.usable {
			info.usable, info.limitSource = limit, path
		}
		break
	}
	return info, nil
}

// coreTimes reads the per-core busy counters from /proc/stat.
func (h hostReader) coreTimes() (map[int]CoreTimes, error) {
	data, err := os.ReadFile(filepath.Join(h.procfsRoot, "stat"))
	if err != nil {
		return nil, fmt.Errorf("read /proc/stat: %w", err)
	}
	return ParseProcStat(data)
}

// cgroupV2 reports a unified hierarchy at the cgroup root.
func (h hostReader) cgroupV2() bool {
	_, err := os.Stat(filepath.Join(h.cgroupRoot, "cgroup.controllers"))
	return err == nil
}

// containerStats is what one container's cgroup says; each part is read
// separately because a controller may not be enabled for it.
type containerStats struct {
	cpuUsedMicros *uint64
	memUsed       *uint64
	memLimit      *uint64 // nil when unlimited or unknown
	ioRead        *uint64
	ioWrite       *uint64
}

// errContainerGone marks a container whose cgroup no longer exists.
var errContainerGone = errors.New("container cgroup not found")

// containerStats reads a container's cgroup. cgroupPath is relative to the
// cgroup root (v2) or to each controller's mount (v1). Problems with a single
// file are returned in problems, not as an error, so one bad file does not
// hide the rest.
func (h hostReader) containerStats(cgroupPath string) (stats containerStats, problems []error, err error) {
	rel := strings.TrimPrefix(filepath.Clean("/"+cgroupPath), "/")
	if rel == "" || !filepath.IsLocal(rel) {
		return stats, nil, fmt.Errorf("cgroup path %q is not below the cgroup root", cgroupPath)
	}
	if h.cgroupV2() {
		return h.containerStatsV2(filepath.Join(h.cgroupRoot, rel))
	}
	return h.containerStatsV1(rel)
}

func (h hostReader) containerStatsV2(dir string) (stats containerStats, problems []error, err error) {
	if _, err := os.Stat(dir); err != nil {
		return stats, nil, fmt.Errorf("%s: %w", dir, errContainerGone)
	}
	note := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, err)
		}
	}
	if cpu, err := readParsed(filepath.Join(dir, "cpu.stat"), ParseFlatKeyed); err == nil {
		if usec, ok := cpu["usage_usec"]; ok {
			stats.cpuUsedMicros = &usec
		} else {
			note(fmt.Errorf("%s: no usage_usec", filepath.Join(dir, "cpu.stat")))
		}
	} else {
		note(err)
	}
	stats.memUsed, stats.memLimit = h.readMemory(dir, "memory.current", "inactive_file", "memory.max", note)
	if r, w, err := readIO(filepath.Join(dir, "io.stat"), ParseIOStat); err == nil {
		stats.ioRead, stats.ioWrite = &r, &w
	} else {
		note(err)
	}
	return stats, problems, nil
}

func (h hostReader) containerStatsV1(rel string) (stats containerStats, problems []error, err error) {
	cpuDir := filepath.Join(h.cgroupRoot, "cpuacct", rel)
	if _, err := os.Stat(cpuDir); err != nil {
		// Some distros mount only the combined hierarchy.
		cpuDir = filepath.Join(h.cgroupRoot, "cpu,cpuacct", rel)
	}
	memDir := filepath.Join(h.cgroupRoot, "memory", rel)
	blkioDir := filepath.Join(h.cgroupRoot, "blkio", rel)
	found := false
	for _, dir := range []string{cpuDir, memDir, blkioDir} {
		if _, err := os.Stat(dir); err == nil {
			found = true
		}
	}
	if !found {
		return stats, nil, fmt.Errorf("%s: %w", rel, errContainerGone)
	}
	note := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, err)
		}
	}
	if ns, err := readParsed(filepath.Join(cpuDir, "cpuacct.usage"), ParseSingleUint); err == nil {
		usec := ns / 1000
		stats.cpuUsedMicros = &usec
	} else {
		note(err)
	}
	stats.memUsed, stats.memLimit = h.readMemory(memDir, "memory.usage_in_bytes", "total_inactive_file", "memory.limit_in_bytes", note)
	if r, w, err := readIO(filepath.Join(blkioDir, "blkio.throttle.io_service_bytes"), ParseBlkioServiceBytes); err == nil {
		stats.ioRead, stats.ioWrite = &r, &w
	} else {
		note(err)
	}
	return stats, problems, nil
}

// readMemory reads usage minus inactive file cache (page cache the kernel
// can drop, as upstream and docker stats subtract) and the limit.
func (h hostReader) readMemory(dir, usageFile, inactiveKey, limitFile string, note func(error)) (used, limit *uint64) {
	usage, err := readParsed(filepath.Join(dir, usageFile), ParseSingleUint)
	if err != nil {
		note(err)
		return nil, nil
	}
	if stat, err := readParsed(filepath.Join(dir, "memory.stat"), ParseFlatKeyed); err == nil {
		usage -= min(usage, stat[inactiveKey])
	} else {
		note(err)
	}
	used = &usage
	data, err := os.ReadFile(filepath.Join(dir, limitFile))
	if err != nil {
		note(err)
		return used, nil
	}
	n, unlimited, err := ParseCgroupLimit(data)
	if err != nil {
		note(fmt.Errorf("%s: %w", filepath.Join(dir, limitFile), err))
		return used, nil
	}
	if unlimited {
		return used, nil
	}
	return used, &n
}

func readParsed[T any](path string, parse func([]byte) (T, error)) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(data)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func readIO(path string, parse func([]byte) (uint64, uint64, error)) (uint64, uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	r, w, err := parse(data)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return r, w, nil
}
