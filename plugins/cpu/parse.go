package cpu

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Parsers for the kernel text files the plugin reads. They take the raw
// bytes so they can be fuzzed; every error names the line.

// ParseMeminfo reads /proc/meminfo ("MemTotal:   16318424 kB") into bytes
// per field. Fields without a unit (HugePages_Total) keep their raw count.
func ParseMeminfo(data []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := eachLine(data, func(lineNo int, line string) error {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("meminfo line %d: no ':' in %q", lineNo, line)
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 || len(fields) > 2 {
			return fmt.Errorf("meminfo line %d: want a value and an optional unit, got %q", lineNo, rest)
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return fmt.Errorf("meminfo line %d (%s): %w", lineNo, key, err)
		}
		if len(fields) == 2 {
			if fields[1] != "kB" {
				return fmt.Errorf("meminfo line %d (%s): unknown unit %q", lineNo, key, fields[1])
			}
			if n > math.MaxUint64/1024 {
				return fmt.Errorf("meminfo line %d (%s): %d kB overflows", lineNo, key, n)
			}
			n *= 1024
		}
		out[strings.TrimSpace(key)] = n
		return nil
	})
	return out, err
}

// ParseFlatKeyed reads cgroup "key value" files: cpu.stat, memory.stat
// (v1 and v2). A repeated key is an error because the kernel never writes
// one twice.
func ParseFlatKeyed(data []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := eachLine(data, func(lineNo int, line string) error {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return fmt.Errorf("line %d: want \"key value\", got %q", lineNo, line)
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d (%s): %w", lineNo, fields[0], err)
		}
		if _, dup := out[fields[0]]; dup {
			return fmt.Errorf("line %d: key %q repeated", lineNo, fields[0])
		}
		out[fields[0]] = n
		return nil
	})
	return out, err
}

// ParseIOStat sums rbytes and wbytes over every device in a cgroup v2
// io.stat ("8:16 rbytes=1459200 wbytes=314773504 rios=192 ...").
func ParseIOStat(data []byte) (readBytes, writeBytes uint64, err error) {
	err = eachLine(data, func(lineNo int, line string) error {
		fields := strings.Fields(line)
		if !strings.Contains(fields[0], ":") {
			return fmt.Errorf("io.stat line %d: %q is not a MAJ:MIN device", lineNo, fields[0])
		}
		for _, kv := range fields[1:] {
			key, value, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("io.stat line %d: %q is not key=value", lineNo, kv)
			}
			var sum *uint64
			switch key {
			case "rbytes":
				sum = &readBytes
			case "wbytes":
				sum = &writeBytes
			default:
				continue
			}
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fmt.Errorf("io.stat line %d (%s): %w", lineNo, key, err)
			}
			if *sum > math.MaxUint64-n {
				return fmt.Errorf("io.stat line %d (%s): total overflows", lineNo, key)
			}
			*sum += n
		}
		return nil
	})
	return readBytes, writeBytes, err
}

// ParseBlkioServiceBytes sums Read and Write over every device in a cgroup
// v1 blkio.throttle.io_service_bytes ("8:0 Read 13918208"); the closing
// "Total N" line is the grand total and is skipped.
func ParseBlkioServiceBytes(data []byte) (readBytes, writeBytes uint64, err error) {
	err = eachLine(data, func(lineNo int, line string) error {
		fields := strings.Fields(line)
		if fields[0] == "Total" && len(fields) == 2 {
			return nil
		}
		if len(fields) != 3 {
			return fmt.Errorf("blkio line %d: want \"MAJ:MIN Op bytes\", got %q", lineNo, line)
		}
		n, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			return fmt.Errorf("blkio line %d (%s): %w", lineNo, fields[1], err)
		}
		var sum *uint64
		switch fields[1] {
		case "Read":
			sum = &readBytes
		case "Write":
			sum = &writeBytes
		default:
			return nil
		}
		if *sum > math.MaxUint64-n {
			return fmt.Errorf("blkio line %d (%s): total overflows", lineNo, fields[1])
		}
		*sum += n
		return nil
	})
	return readBytes, writeBytes, err
}

// CoreTimes is one core's busy time from /proc/stat, in USER_HZ ticks.
type CoreTimes struct {
	User   uint64
	System uint64
}

// ParseProcStat reads the per-core "cpuN user nice system ..." lines of
// /proc/stat. The aggregate "cpu" line and other lines are skipped.
func ParseProcStat(data []byte) (map[int]CoreTimes, error) {
	out := map[int]CoreTimes{}
	err := eachLine(data, func(lineNo int, line string) error {
		fields := strings.Fields(line)
		name, ok := strings.CutPrefix(fields[0], "cpu")
		if !ok || name == "" {
			return nil
		}
		core, err := parseCPUIndex(name)
		if err != nil {
			return fmt.Errorf("stat line %d: %w", lineNo, err)
		}
		if len(fields) < 4 {
			return fmt.Errorf("stat line %d: cpu%d has %d fields, want at least 3 counters", lineNo, core, len(fields))
		}
		user, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return fmt.Errorf("stat line %d: cpu%d user: %w", lineNo, core, err)
		}
		system, err := strconv.ParseUint(fields[3], 10, 64)
		if err != nil {
			return fmt.Errorf("stat line %d: cpu%d system: %w", lineNo, core, err)
		}
		if _, dup := out[core]; dup {
			return fmt.Errorf("stat line %d: cpu%d repeated", lineNo, core)
		}
		out[core] = CoreTimes{User: user, System: system}
		return nil
	})
	return out, err
}

// unlimitedThreshold: cgroup v1 writes "no limit" as the largest page-aligned
// int64 (9223372036854771712); anything this big is no limit.
const unlimitedThreshold = 1 << 62

// ParseCgroupLimit reads memory.max (v2, "max" when unlimited) or
// memory.limit_in_bytes (v1, a huge number when unlimited).
func ParseCgroupLimit(data []byte) (limit uint64, unlimited bool, err error) {
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("memory limit %q: %w", s, err)
	}
	if n >= unlimitedThreshold {
		return 0, true, nil
	}
	return n, false, nil
}

// ParseSingleUint reads a file holding one number (cpuacct.usage,
// memory.current).
func ParseSingleUint(data []byte) (uint64, error) {
	s := strings.TrimSpace(string(data))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", s, err)
	}
	return n, nil
}

// eachLine calls fn with every non-blank line, trimmed, numbered from 1.
func eachLine(data []byte, fn func(lineNo int, line string) error) error {
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for scanner.Scan() {
		lineNo++
		line := strings.TrimSpace(scanner.Text())
		if line == "" {
			continue
		}
		if err := fn(lineNo, line); err != nil {
			return err
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("line %d: %w", lineNo+1, err)
	}
	return nil
}

// NetDev is the byte counters of /proc/net/dev summed over interfaces.
type NetDev struct {
	RxBytes, TxBytes uint64
}

// ParseNetDev sums the receive and transmit byte counters of
// /proc/<pid>/net/dev. withLoopback keeps "lo": psutil's
// net_io_counters (upstream's node net_rx/net_tx) counts it, upstream's
// _parse_proc_net_dev for containers skips it.
func ParseNetDev(data []byte, withLoopback bool) (NetDev, error) {
	var out NetDev
	for _, line := range strings.Split(string(data), "\n") {
		iface, counters, ok := strings.Cut(line, ":")
		if !ok {
			continue // the two header lines
		}
		if strings.TrimSpace(iface) == "lo" && !withLoopback {
			continue
		}
		fields := strings.Fields(counters)
		if len(fields) < 9 {
			return NetDev{}, fmt.Errorf("net/dev: interface %q has %d fields, want at least 9", strings.TrimSpace(iface), len(fields))
		}
		rx, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return NetDev{}, fmt.Errorf("net/dev: %q rx bytes: %w", strings.TrimSpace(iface), err)
		}
		tx, err := strconv.ParseUint(fields[8], 10, 64)
		if err != nil {
			return NetDev{}, fmt.Errorf("net/dev: %q tx bytes: %w", strings.TrimSpace(iface), err)
		}
		out.RxBytes += rx
		out.TxBytes += tx
	}
	return out, nil
}

// Mount is one line of /proc/self/mounts.
type Mount struct {
	Device, MountPoint, FSType string
}

// prunedDiskTypes are the filesystems upstream drops from node disk on top
// of psutil's (agent/docker/intrinsic.py pruned_disk_types).
var prunedDiskTypes = map[string]bool{"vfat": true, "lxcfs": true, "squashfs": true, "tmpfs": true, "iso9660": true}

// DiskMounts picks the mounts that count for node disk, as upstream:
// psutil.disk_partitions(all=False) keeps mounts with a device whose
// filesystem type /proc/filesystems lists without "nodev" (zfs allowed);
// upstream then drops pruned types, Docker's runc runtime mounts and the
// btrfs subvolume dir. filesystems is /proc/filesystems; mounts is
// /proc/self/mounts. Fields are unescaped (\040 is a space).
func DiskMounts(filesystems, mounts []byte) []Mount {
	physical := map[string]bool{}
	for _, line := range strings.Split(string(filesystems), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1:
			physical[fields[0]] = true
		case len(fields) == 2 && fields[0] == "nodev" && fields[1] == "zfs":
			physical["zfs"] = true
		}
	}
	var out []Mount
	for _, line := range strings.Split(string(mounts), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		m := Mount{Device: unescapeMount(fields[0]), MountPoint: unescapeMount(fields[1]), FSType: fields[2]}
		switch {
		case m.Device == "" || m.Device == "none", !physical[m.FSType], prunedDiskTypes[m.FSType],
			strings.HasPrefix(m.MountPoint, "/proc/docker/runtime-runc/moby/"),
			m.MountPoint == "/var/lib/docker/btrfs":
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount decodes the octal escapes (\040, \011, \012, \134) the
// kernel writes in mount fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
