package rocm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// Paths under the sysfs root.
const (
	kfdNodesDir = "class/kfd/kfd/topology/nodes"
	drmClassDir = "class/drm"
	pciDevices  = "bus/pci/devices"
)

// errNoKFD means the amdgpu driver (its KFD part) is not loaded.
var errNoKFD = errors.New("no KFD topology: the amdgpu driver is not loaded")

// parseProperties reads a KFD topology properties file: one "name value"
// pair per line, values unsigned decimal. Lines that do not have that shape
// are skipped; callers check for the keys they need.
func parseProperties(data []byte) map[string]uint64 {
	props := make(map[string]uint64, 40)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		name, value, ok := bytes.Cut(bytes.TrimSpace(line), []byte{' '})
		if !ok || len(name) == 0 {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(value)), 10, 64)
		if err != nil {
			continue
		}
		props[string(name)] = n
	}
	return props
}

// parseUint reads a sysfs file holding one unsigned decimal number.
func parseUint(data []byte) (uint64, error) {
	s := string(bytes.TrimSpace(data))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an unsigned number: %q", pluginkit.Truncate(s))
	}
	return n, nil
}

// pciAddress forms the sysfs PCI address from KFD's domain and location_id
// (bus<<8 | device<<3 | function; higher bits are not part of the address).
func pciAddress(domain, location uint64) string {
	location &= 0xffff
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain&0xffff, location>>8, (location>>3)&0x1f, location&7)
}

// readUintFile reads a sysfs file holding one unsigned number.
func readUintFile(path string) (uint64, error) {
	var buf [32]byte
	data, err := readSmall(path, buf[:])
	if err != nil {
		return 0, err
	}
	return parseUint(data)
}

// readTrimmed reads a short text file.
func readTrimmed(path string) (string, error) {
	var buf [256]byte
	data, err := readSmall(path, buf[:])
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(data)), nil
}

// numaNodeOf reads <sysfs>/bus/pci/devices/<addr>/numa_node.
func numaNodeOf(sysfsRoot, addr string) int {
	var buf [16]byte
	data, err := readSmall(filepath.Join(sysfsRoot, pciDevices, addr, "numa_node"), buf[:])
	if err != nil {
		return -1
	}
	return pluginkit.ParseNUMANode(data)
}

// kfdNode is one node of the KFD topology.
type kfdNode struct {
	number int
	gpuID  uint64
	name   string
	props  map[string]uint64
	// memBytes is the sum of the node's memory banks.
	memBytes uint64
}

func (n kfdNode) isGPU() bool { return n.props["simd_count"] > 0 && n.gpuID != 0 }

// readKFDNodes reads every topology node, sorted by node number, which is
// the order ROCr enumerates agents in.
func readKFDNodes(sysfsRoot string) ([]kfdNode, error) {
	dir := filepath.Join(sysfsRoot, kfdNodesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errNoKFD
		}
		return nil, fmt.Errorf("read KFD topology: %w", err)
	}
	numbers := make([]int, 0, len(entries))
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 {
			numbers = append(numbers, n)
		}
	}
	slices.Sort(numbers)
	nodes := make([]kfdNode, 0, len(numbers))
	for _, num := range numbers {
		base := filepath.Join(dir, strconv.Itoa(num))
		raw, err := os.ReadFile(filepath.Join(base, "properties"))
		if err != nil {
			// A node that vanished between ReadDir and now (hot-unplug).
			continue
		}
		node := kfdNode{number: num, props: parseProperties(raw)}
		node.gpuID, _ = readUintFile(filepath.Join(base, "gpu_id"))
		node.name, _ = readTrimmed(filepath.Join(base, "name"))
		node.memBytes = memBankBytes(filepath.Join(base, "mem_banks"))
		if node.memBytes == 0 {
			node.memBytes = node.props["local_mem_size"]
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

// memBankBytes sums size_in_bytes over mem_banks/*/properties.
func memBankBytes(dir string) uint64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total uint64
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "properties"))
		if err != nil {
			continue
		}
		total += parseProperties(raw)["size_in_bytes"]
	}
	return total
}

// drmIndex maps the canonical sysfs device directory behind each DRM card
// node to the card's minor, so a render node finds its card through the
// device they share (a PCI device or an amdgpu_xcp partition device).
func drmIndex(sysfsRoot string) map[string]int {
	cards := map[string]int{}
	dir := filepath.Join(sysfsRoot, drmClassDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return cards
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "card")
		if !ok {
			continue
		}
		minor, err := strconv.Atoi(rest) // skips connectors such as card1-DP-1
		if err != nil {
			continue
		}
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, e.Name(), "device"))
		if err != nil {
			continue
		}
		cards[dev] = minor
	}
	return cards
}

// cardForRender finds the card minor sharing a device with renderD<minor>.
func cardForRender(sysfsRoot string, cards map[string]int, renderMinor int) (int, bool) {
	dev, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, drmClassDir, "renderD"+strconv.Itoa(renderMinor), "device"))
	if err != nil {
		return 0, false
	}
	card, ok := cards[dev]
	return card, ok
}

// hwmonDir returns the first hwmon directory of a PCI device, or "".
func hwmonDir(pciDir string) string {
	entries, err := os.ReadDir(filepath.Join(pciDir, "hwmon"))
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "hwmon") {
			return filepath.Join(pciDir, "hwmon", e.Name())
		}
	}
	return ""
}

// pathError names the file a raw read failed on.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }
