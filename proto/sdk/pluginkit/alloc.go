package pluginkit

import (
	"fmt"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
)

// RestoreShares reads the <SLOT>_SHARES lines of the device kind from
// resource.txt, as a RestoreAllocation of a plugin with one kind does.
// Zero shares and slots left empty are dropped; devices that are gone are
// kept, because the container still holds them.
func RestoreShares(resourceData map[string]string, kind string) (sdk.Allocation, error) {
	alloc, err := sdk.AllocationFromResourceData(resourceData, []string{kind})
	if err != nil {
		return nil, fmt.Errorf("restore %s allocation: %w", kind, err)
	}
	for slot, perDevice := range alloc {
		for id, amount := range perDevice {
			if amount.IsZero() {
				delete(perDevice, id)
			}
		}
		if len(perDevice) == 0 {
			delete(alloc, slot)
		}
	}
	return alloc, nil
}

// KnownIDs lists device IDs for an error message: comma-separated, or
// "none".
func KnownIDs(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
