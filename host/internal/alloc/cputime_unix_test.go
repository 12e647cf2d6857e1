//go:build unix

package alloc

import (
	"syscall"
	"time"
)

// processCPUTime is user+system time of the whole process (GC included), so
// benchmarks can report CPU cost per operation even on a busy machine where
// wall-clock ns/op is inflated by waiting for a core.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
