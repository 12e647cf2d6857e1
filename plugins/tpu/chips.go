package tpu

import "fmt"

// googleVendorID is Google's PCI vendor id. Google's gVNIC (0x0042) shares
// it, so a device must also look like a TPU (see isTPU).
const googleVendorID = 0x1ae0

// pciClassAccelerator is the PCI base class "processing accelerator".
const pciClassAccelerator = 0x12

// chipInfo describes one TPU generation.
type chipInfo struct {
	generation string
	// hbmBytes is the chip's high-bandwidth memory.
	hbmBytes uint64
	// tensorCores per chip.
	tensorCores uint32
}

const gib = 1 << 30

// chipsByDeviceID maps Google PCI device ids to TPU generations, as far as
// they are public. v2 and v3 share 0x0027 and differ by subsystem device id.
var chipsByDeviceID = map[uint16]chipInfo{
	0x0056: {"v4lite", 8 * gib, 1},
	0x005e: {"v4", 32 * gib, 2},
	0x0062: {"v5p", 95 * gib, 2},
	0x0063: {"v5e", 16 * gib, 1},
	0x006f: {"v6e", 32 * gib, 1},
}

// v2v3 tells TPU v2 from v3 by subsystem device id.
var v2v3 = map[uint16]chipInfo{
	0x004e: {"v2", 16 * gib, 2},
	0x004f: {"v3", 32 * gib, 2},
}

const deviceIDv2v3 = 0x0027

// lookupChip returns the generation of a device id; ok is false for ids
// not in the table, which are still TPUs if the PCI class says so.
func lookupChip(deviceID, subsystemDevice uint16) (chipInfo, bool) {
	if deviceID == deviceIDv2v3 {
		if c, ok := v2v3[subsystemDevice]; ok {
			return c, true
		}
		return chipInfo{generation: "v2/v3"}, true
	}
	c, ok := chipsByDeviceID[deviceID]
	return c, ok
}

// modelName is "TPU v4", or the raw id for an unknown chip.
func modelName(c chipInfo, known bool, deviceID uint16) string {
	if known {
		return "TPU " + c.generation
	}
	return fmt.Sprintf("TPU (unknown PCI device 0x%04x)", deviceID)
}

// chipBounds is the TPU_CHIPS_PER_PROCESS_BOUNDS of a single process using
// n chips of one host, as x,y,z. Only the shapes libtpu accepts on one host
// are listed:
//
//	chips  bounds
//	1      1,1,1
//	2      1,2,1
//	4      2,2,1
//	8      2,4,1
//
// Other counts get no bounds and libtpu decides (or refuses) itself.
func chipBounds(n int) (string, bool) {
	switch n {
	case 1:
		return "1,1,1", true
	case 2:
		return "1,2,1", true
	case 4:
		return "2,2,1", true
	case 8:
		return "2,4,1", true
	}
	return "", false
}
