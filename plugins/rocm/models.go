package rocm

import "fmt"

// modelNames maps AMD PCI device ids to marketing names, for cards without
// a product_name file (workstation and consumer cards). The list is
// deliberately small; unknown ids are named by id and gfx target.
var modelNames = map[uint16]string{
	0x66a0: "AMD Instinct MI60",
	0x66a1: "AMD Instinct MI50",
	0x738c: "AMD Instinct MI100",
	0x738e: "AMD Instinct MI100",
	0x7408: "AMD Instinct MI250X",
	0x740c: "AMD Instinct MI250X/MI250",
	0x740f: "AMD Instinct MI210",
	0x74a0: "AMD Instinct MI300A",
	0x74a1: "AMD Instinct MI300X",
	0x74a5: "AMD Instinct MI325X",
	0x73a2: "AMD Radeon PRO W6900X",
	0x73a3: "AMD Radeon PRO W6800",
	0x73bf: "AMD Radeon RX 6800/6900",
	0x7448: "AMD Radeon PRO W7900",
	0x744c: "AMD Radeon RX 7900 XT/XTX",
	0x745e: "AMD Radeon PRO W7800",
}

// modelName prefers the board's product_name, then the table.
func modelName(productName string, deviceID uint16, gfx string) string {
	if productName != "" {
		return productName
	}
	if name, ok := modelNames[deviceID]; ok {
		return name
	}
	if gfx != "" {
		return fmt.Sprintf("AMD GPU 0x%04x (%s)", deviceID, gfx)
	}
	return fmt.Sprintf("AMD GPU 0x%04x", deviceID)
}
