//go:build linux && cgo

package memtrim

// #include <malloc.h>
import "C"

// Trim is glibc's malloc_trim(0): every arena's free pages go back to the
// OS. It reports whether any memory was released.
func Trim() bool { return C.malloc_trim(0) == 1 }
