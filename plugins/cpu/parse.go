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
