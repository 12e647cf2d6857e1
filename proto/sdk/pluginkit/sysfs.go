package pluginkit

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
)

// ParsePCIID reads a PCI id file of sysfs such as vendor ("0x1002").
func ParsePCIID(data []byte) (uint16, error) {
	s := string(bytes.TrimSpace(data))
	hex, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok || len(hex) == 0 || len(hex) > 4 {
		return 0, fmt.Errorf("not a PCI id: %q", Truncate(s))
	}
	n, err := strconv.ParseUint(hex, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("not a PCI id: %q", Truncate(s))
	}
	return uint16(n), nil
}

// ParseNUMANode reads a numa_node file of sysfs: -1 (no NUMA information),
// garbage and absurd values are sdk.UnknownNUMANode.
func ParseNUMANode(data []byte) int {
	n, err := strconv.Atoi(string(bytes.TrimSpace(data)))
	if err != nil || n < 0 || n > 1<<16 {
		return sdk.UnknownNUMANode
	}
	return n
}

// Truncate shortens what a file held for an error message.
func Truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
