//go:build !unix

package alloc

import "time"

// processCPUTime is not measured off unix; the metric then reads 0.
func processCPUTime() time.Duration { return 0 }
