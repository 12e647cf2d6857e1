package pluginkit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shopspring/decimal"

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

// WholeDevices checks an allocation for a plugin whose devices are handed
// out whole, on one slot, against its inventory (the device ids in
// inventory order) and returns the indexes of the allocated devices in that
// order, which is the order the container will number them in. plugin,
// noun and kind name things in the errors: "rocm", "device", "ROCm device".
func WholeDevices(alloc sdk.Allocation, slot string, ids []string, plugin, noun, kind string) ([]int, error) {
	byID := make(map[string]int, len(ids))
	for i, id := range ids {
		byID[id] = i
	}
	var picked []int
	for s, perDevice := range alloc {
		if s != slot {
			return nil, fmt.Errorf("slot %q does not belong to the %s plugin", s, plugin)
		}
		for id, amount := range perDevice {
			if amount.IsZero() {
				continue
			}
			i, ok := byID[id]
			if !ok {
				return nil, fmt.Errorf("slot %q: %s %q is not a known %s (known: %s)", s, noun, id, kind, KnownIDs(ids))
			}
			if amount.IsNegative() || amount.GreaterThan(decimal.NewFromInt(1)) {
				return nil, fmt.Errorf("slot %q: %s %q: amount %s is outside 0..1", s, noun, id, amount)
			}
			picked = append(picked, i)
		}
	}
	slices.Sort(picked)
	return picked, nil
}
