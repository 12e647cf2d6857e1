package tpu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

const pciDevices = "bus/pci/devices"

// nodeKind is how a chip reaches user space.
type nodeKind string

const (
	nodeAccel nodeKind = "accel" // /dev/accel<N>, the accel driver (v2-v4)
	nodeVFIO  nodeKind = "vfio"  // /dev/vfio/<group>, vfio-pci (v5e and later)
	nodeNone  nodeKind = ""      // no driver bound
)

// chip is one TPU chip. It is comparable, so a re-read can be compared
// with the last one.
type chip struct {
	id          string
	pciAddr     string
	deviceID    uint16
	subsystemID uint16
	info        chipInfo
	known       bool
	numaNode    int
	driver      string
	kind        nodeKind
	// accelIndex is N of /dev/accel<N>, vfioGroup the IOMMU group; -1 if
	// not applicable.
	accelIndex int
	vfioGroup  int
	health     sdk.Health
	reason     string
}

// parseClass reads a PCI class file ("0x120000") and returns the base
// class (0x12).
func parseClass(data []byte) (uint8, error) {
	s := string(bytes.TrimSpace(data))
	hex, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok || len(hex) == 0 || len(hex) > 6 {
		return 0, fmt.Errorf("not a PCI class: %q", pluginkit.Truncate(s))
	}
	n, err := strconv.ParseUint(hex, 16, 24)
	if err != nil {
		return 0, fmt.Errorf("not a PCI class: %q", pluginkit.Truncate(s))
	}
	return uint8(n >> 16), nil
}

// parseIndexedName reads the number at the end of names such as "accel3".
func parseIndexedName(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || len(rest) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

func readFile(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return data
}

// isTPU says whether a Google PCI device is a TPU: a known TPU id, or an
// unknown id whose class is "processing accelerator".
func isTPU(known bool, baseClass uint8, classErr error) bool {
	return known || (classErr == nil && baseClass == pciClassAccelerator)
}

// discover lists the TPU chips under <sysfs>/bus/pci/devices. Chips are
// numbered in accel order when every chip has an accel node, otherwise in
// PCI address order; masked chips keep the others' numbers.
func discover(cfg config) ([]chip, error) {
	dir := filepath.Join(cfg.SysfsRoot, pciDevices)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list PCI devices: %w", err)
	}
	var chips []chip
	for _, e := range entries {
		dev := filepath.Join(dir, e.Name())
		vendor, err := pluginkit.ParsePCIID(readFile(filepath.Join(dev, "vendor")))
		if err != nil || vendor != googleVendorID {
			continue
		}
		deviceID, err := pluginkit.ParsePCIID(readFile(filepath.Join(dev, "device")))
		if err != nil {
			continue
		}
		subsys, _ := pluginkit.ParsePCIID(readFile(filepath.Join(dev, "subsystem_device")))
		info, known := lookupChip(deviceID, subsys)
		baseClass, classErr := parseClass(readFile(filepath.Join(dev, "class")))
		if !isTPU(known, baseClass, classErr) {
			continue
		}
		c := chip{
			pciAddr: e.Name(), deviceID: deviceID, subsystemID: subsys, info: info, known: known,
			numaNode:   pluginkit.ParseNUMANode(readFile(filepath.Join(dev, "numa_node"))),
			accelIndex: -1, vfioGroup: -1, health: sdk.HealthHealthy,
		}
		if target, err := os.Readlink(filepath.Join(dev, "driver")); err == nil {
			c.driver = filepath.Base(target)
		}
		if idx, ok := accelIndexOf(cfg.SysfsRoot, dev); ok {
			c.kind, c.accelIndex = nodeAccel, idx
		} else if target, err := os.Readlink(filepath.Join(dev, "iommu_group")); err == nil && c.driver == "vfio-pci" {
			if group, err := strconv.Atoi(filepath.Base(target)); err == nil && group >= 0 {
				c.kind, c.vfioGroup = nodeVFIO, group
			}
		}
		chips = append(chips, c)
	}
	allAccel := len(chips) > 0
	for _, c := range chips {
		allAccel = allAccel && c.kind == nodeAccel
	}
	slices.SortFunc(chips, func(a, b chip) int {
		if allAccel {
			return a.accelIndex - b.accelIndex
		}
		return strings.Compare(a.pciAddr, b.pciAddr)
	})
	out := chips[:0]
	for i, c := range chips {
		c.id = strconv.Itoa(i)
		if slices.Contains(cfg.DeviceMask, c.id) || slices.Contains(cfg.DeviceMask, c.pciAddr) {
			continue
		}
		c.health, c.reason = chipHealth(cfg, c)
		out = append(out, c)
	}
	return slices.Clip(out), nil
}

// accelIndexOf finds accel<N> under the PCI device (or, failing that, a
// class/accel entry whose device is this PCI device).
func accelIndexOf(sysfsRoot, pciDir string) (int, bool) {
	if entries, err := os.ReadDir(filepath.Join(pciDir, "accel")); err == nil {
		for _, e := range entries {
			if n, ok := parseIndexedName(e.Name(), "accel"); ok {
				return n, true
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(sysfsRoot, "class", "accel"))
	if err != nil {
		return 0, false
	}
	want, err := filepath.EvalSymlinks(pciDir)
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		n, ok := parseIndexedName(e.Name(), "accel")
		if !ok {
			continue
		}
		if dev, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "class", "accel", e.Name(), "device")); err == nil && dev == want {
			return n, true
		}
	}
	return 0, false
}

// hostNodes are the device files a chip needs on the host.
func (c chip) hostNodes(devRoot string) []string {
	switch c.kind {
	case nodeAccel:
		return []string{filepath.Join(devRoot, "accel"+strconv.Itoa(c.accelIndex))}
	case nodeVFIO:
		return []string{filepath.Join(devRoot, "vfio", strconv.Itoa(c.vfioGroup))}
	}
	return nil
}

// chipHealth: a chip without a usable driver, or (when checked) without its
// device nodes, is unhealthy.
func chipHealth(cfg config, c chip) (sdk.Health, string) {
	if c.kind == nodeNone {
		return sdk.HealthUnhealthy, fmt.Sprintf("no accel or vfio device node (driver %q)", c.driver)
	}
	if !cfg.CheckDeviceNodes {
		return sdk.HealthHealthy, ""
	}
	nodes := c.hostNodes(cfg.DevRoot)
	if c.kind == nodeVFIO {
		nodes = append(nodes, filepath.Join(cfg.DevRoot, "vfio", "vfio"))
	}
	var missing []string
	for _, n := range nodes {
		if _, err := os.Stat(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return sdk.HealthUnhealthy, fmt.Sprintf("device nodes missing: %v", missing)
	}
	return sdk.HealthHealthy, ""
}
