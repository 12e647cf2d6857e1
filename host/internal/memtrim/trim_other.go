//go:build !(linux && cgo)

package memtrim

// Trim does nothing where the agent is built without glibc's malloc.
func Trim() bool { return false }
