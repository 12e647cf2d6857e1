package watcher

import (
	"path/filepath"
	"slices"
	"strings"
)

// MountpointsUnder lists the mount points in /proc/mounts text that are
// direct children of prefix, sorted and without duplicates (what upstream
// finds by scanning prefix for directories that are mount points).
func MountpointsUnder(procMounts []byte, prefix string) []string {
	prefix = filepath.Clean(prefix)
	out := []string{}
	for _, line := range strings.Split(string(procMounts), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		mp := unescapeOctal(fields[1])
		if filepath.Dir(mp) == prefix && mp != prefix {
			out = append(out, mp)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
