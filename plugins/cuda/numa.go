package cuda

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// numaNodeOf reads <sysfs>/bus/pci/devices/<bus id>/numa_node. The kernel
// writes -1 when the platform has no NUMA information; a missing or
// unreadable file is unknown too.
func numaNodeOf(sysfsRoot, busID string) int {
	if busID == "" || strings.ContainsAny(busID, `/\`) {
		return sdk.UnknownNUMANode
	}
	raw, err := os.ReadFile(filepath.Join(sysfsRoot, "bus", "pci", "devices", busID, "numa_node"))
	if err != nil {
		return sdk.UnknownNUMANode
	}
	return pluginkit.ParseNUMANode(raw)
}
