package rocm

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/baiagent/baiagent/proto/sdk"
)

// gpu is one allocatable ROCm device: a whole GPU or one compute partition
// of it. The struct is comparable so that a re-read can be compared with
// the last one.
type gpu struct {
	// index is the device's position among all GPU nodes of the KFD
	// topology, ROCr's enumeration order on the host; it is the device ID.
	index        int
	id           string
	kfdNode      int
	gpuID        uint64
	gfx          string
	vendorID     uint16
	deviceID     uint16
	pciAddr      string
	renderMinor  int
	cardMinor    int // -1 when no card node matched
	uniqueID     uint64
	memBytes     uint64
	computeUnits uint32
	numaNode     int
	model        string
	// partition is this device's index among the KFD nodes of its PCI
	// device; partitions is how many there are (1 for a whole GPU).
	partition        int
	partitions       int
	computePartition string
	// pciDir and sensors are resolved once for the metrics poll.
	pciDir  string
	sensors sensorPaths
	health  sdk.Health
	reason  string
}

func (g gpu) uuid() string {
	if g.uniqueID == 0 {
		return ""
	}
	return fmt.Sprintf("0x%016x", g.uniqueID)
}

// discover reads the KFD topology and matches each GPU node with its DRM
// nodes, PCI device and NUMA node. Masked devices are dropped without
// renumbering the others.
func discover(cfg config) ([]gpu, error) {
	nodes, err := readKFDNodes(cfg.SysfsRoot)
	if err != nil {
		return nil, err
	}
	cards := drmIndex(cfg.SysfsRoot)
	var gpus []gpu
	perPCI := map[string]int{}
	for _, n := range nodes {
		if !n.isGPU() {
			continue
		}
		p := n.props
		g := gpu{
			index:       len(gpus),
			id:          strconv.Itoa(len(gpus)),
			kfdNode:     n.number,
			gpuID:       n.gpuID,
			gfx:         n.name,
			vendorID:    uint16(p["vendor_id"]),
			deviceID:    uint16(p["device_id"]),
			pciAddr:     pciAddress(p["domain"], p["location_id"]),
			renderMinor: int(p["drm_render_minor"]),
			cardMinor:   -1,
			uniqueID:    p["unique_id"],
			memBytes:    n.memBytes,
			health:      sdk.HealthHealthy,
		}
		if perCU := p["simd_per_cu"]; perCU > 0 {
			g.computeUnits = uint32(min(p["simd_count"]/perCU, 1<<31))
		}
		g.partition = perPCI[g.pciAddr]
		perPCI[g.pciAddr]++
		if card, ok := cardForRender(cfg.SysfsRoot, cards, g.renderMinor); ok {
			g.cardMinor = card
		}
		g.numaNode = numaNodeOf(cfg.SysfsRoot, g.pciAddr)
		if dir, err := filepath.EvalSymlinks(filepath.Join(cfg.SysfsRoot, pciDevices, g.pciAddr)); err == nil {
			g.pciDir = dir
			g.sensors = findSensors(dir)
			product, _ := readTrimmed(filepath.Join(dir, "product_name"))
			g.model = modelName(product, g.deviceID, g.gfx)
			g.computePartition, _ = readTrimmed(filepath.Join(dir, "current_compute_partition"))
			if g.uniqueID == 0 {
				if hex, err := readTrimmed(filepath.Join(dir, "unique_id")); err == nil {
					g.uniqueID, _ = strconv.ParseUint(trimHex(hex), 16, 64)
				}
			}
		} else {
			g.model = modelName("", g.deviceID, g.gfx)
		}
		gpus = append(gpus, g)
	}
	out := gpus[:0]
	for _, g := range gpus {
		g.partitions = perPCI[g.pciAddr]
		if masked(cfg.DeviceMask, g) {
			continue
		}
		if cfg.CheckDeviceNodes {
			g.health, g.reason = nodeHealth(cfg.DevRoot, g)
		}
		out = append(out, g)
	}
	return slices.Clip(out), nil
}

func trimHex(s string) string {
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		return s[2:]
	}
	return s
}

func masked(mask []string, g gpu) bool {
	for _, m := range mask {
		if m == g.id || m == strconv.FormatUint(g.gpuID, 10) || m == g.pciAddr || (g.uuid() != "" && m == g.uuid()) {
			return true
		}
	}
	return false
}

// deviceNodes are the host paths a device needs, /dev/kfd excluded.
func (g gpu) deviceNodes(devRoot string) []string {
	nodes := []string{filepath.Join(devRoot, "dri", "renderD"+strconv.Itoa(g.renderMinor))}
	if g.cardMinor >= 0 {
		nodes = append(nodes, filepath.Join(devRoot, "dri", "card"+strconv.Itoa(g.cardMinor)))
	}
	return nodes
}

// nodeHealth checks that the device nodes a container needs exist.
func nodeHealth(devRoot string, g gpu) (sdk.Health, string) {
	if g.renderMinor == 0 {
		return sdk.HealthUnhealthy, "KFD node has no DRM render node"
	}
	var missing []string
	for _, path := range append([]string{filepath.Join(devRoot, "kfd")}, g.deviceNodes(devRoot)...) {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		return sdk.HealthUnhealthy, fmt.Sprintf("device nodes missing: %v", missing)
	}
	return sdk.HealthHealthy, ""
}
