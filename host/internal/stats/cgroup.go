package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupPathOfPID reads procRoot/<pid>/cgroup ("/proc" normally) and
// returns the process's cgroup relative to the cgroup root, as
// sdk.ContainerRef.CgroupPath wants it: the unified ("0::") entry on
// cgroup v2, the cpuacct (else memory) entry on v1. Upstream resolves
// container cgroups from the container's PID the same way.
func CgroupPathOfPID(procRoot string, pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("cgroup of pid %d: not a process", pid)
	}
	file := filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	var unified, cpuacct, memory string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path; the path may contain ':'.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			unified = parts[2]
		default:
			for _, c := range strings.Split(parts[1], ",") {
				switch c {
				case "cpuacct":
					cpuacct = parts[2]
				case "memory":
					memory = parts[2]
				}
			}
		}
	}
	var path string
	switch {
	case cpuacct != "":
		path = cpuacct
	case memory != "":
		path = memory
	default:
		path = unified
	}
	rel := strings.TrimPrefix(filepath.Clean("/"+path), "/")
	if rel == "" {
		return "", fmt.Errorf("cgroup of pid %d: %s names the root cgroup (a cgroup namespace?)", pid, file)
	}
	return rel, nil
}
