package rocm

import (
	"context"
	"os"
	"path/filepath"
	"slices"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// physicalSample is one poll of a PCI device. Partitions of one GPU share
// it: the kernel measures the whole GPU.
type physicalSample struct {
	busy, vramUsed, vramTotal       *uint64
	tempMilli, powerMicro, capMicro *uint64
}

func optional(path string) *uint64 {
	if path == "" {
		return nil
	}
	v, err := readUintFile(path)
	if err != nil {
		return nil
	}
	return &v
}

// sensorPaths are the files one poll reads, found once at discovery so a
// poll opens only files that exist; "" where the kernel has no such file.
type sensorPaths struct {
	busy, vramUsed, temp, power, powerCap string
	// vramTotal is read once: it does not change while the driver is loaded.
	vramTotal uint64
}

func existing(path string) string {
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// findSensors looks for the amdgpu sysfs and hwmon files of a PCI device.
func findSensors(pciDir string) sensorPaths {
	s := sensorPaths{
		busy:     existing(filepath.Join(pciDir, "gpu_busy_percent")),
		vramUsed: existing(filepath.Join(pciDir, "mem_info_vram_used")),
	}
	s.vramTotal, _ = readUintFile(filepath.Join(pciDir, "mem_info_vram_total"))
	if hwmon := hwmonDir(pciDir); hwmon != "" {
		s.temp = existing(filepath.Join(hwmon, "temp1_input"))
		// Older GPUs report power1_average; MI300 only power1_input.
		if s.power = existing(filepath.Join(hwmon, "power1_average")); s.power == "" {
			s.power = existing(filepath.Join(hwmon, "power1_input"))
		}
		if s.power != "" {
			s.powerCap = existing(filepath.Join(hwmon, "power1_cap"))
		}
	}
	return s
}

func samplePhysical(paths sensorPaths) physicalSample {
	s := physicalSample{
		busy:       optional(paths.busy),
		vramUsed:   optional(paths.vramUsed),
		tempMilli:  optional(paths.temp),
		powerMicro: optional(paths.power),
	}
	if s.powerMicro != nil {
		s.capMicro = optional(paths.powerCap)
	}
	if paths.vramTotal > 0 {
		total := paths.vramTotal
		s.vramTotal = &total
	}
	return s
}

// NodeMetrics reads gpu_busy_percent, mem_info_vram_used/total and hwmon
// temp1_input and power1_average (or power1_input) of every device's PCI
// device. Each device reports its GPU's values; a partition therefore
// reports the whole GPU it lives on, and the node totals count each GPU
// once. Files the kernel does not provide are left out.
func (p *Plugin) NodeMetrics(context.Context) ([]sdk.Metric, error) {
	p.mu.Lock()
	gpus := slices.Clone(p.gpus)
	p.mu.Unlock()
	if len(gpus) == 0 {
		return nil, nil
	}
	util := sdk.Metric{Key: "rocm_util", Type: sdk.MetricGauge, UnitHint: "percent", PerDevice: make(map[string]sdk.Measurement, len(gpus))}
	mem := sdk.Metric{Key: "rocm_mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerDevice: make(map[string]sdk.Measurement, len(gpus))}
	temp := sdk.Metric{Key: "rocm_temp", Type: sdk.MetricGauge, UnitHint: "Celsius", PerDevice: make(map[string]sdk.Measurement, len(gpus))}
	power := sdk.Metric{Key: "rocm_power", Type: sdk.MetricGauge, UnitHint: "Watts", PerDevice: make(map[string]sdk.Measurement, len(gpus))}
	hundred := decimal.NewFromInt(100)
	var utilSum, utilCap, memUsed, memTotal, tempSum, powerSum, powerCap decimal.Decimal
	tempCount, powerCapKnown := 0, true
	samples := make(map[string]physicalSample, len(gpus))
	for _, g := range gpus {
		if g.pciDir == "" {
			continue
		}
		s, seen := samples[g.pciDir]
		if !seen {
			s = samplePhysical(g.sensors)
			samples[g.pciDir] = s
		}
		if s.busy != nil {
			v := decimal.NewFromUint64(*s.busy)
			util.PerDevice[g.id] = sdk.Measurement{Value: v, Capacity: &hundred}
			if !seen {
				utilSum, utilCap = utilSum.Add(v), utilCap.Add(hundred)
			}
		}
		if s.vramUsed != nil && s.vramTotal != nil {
			used, total := decimal.NewFromUint64(*s.vramUsed), decimal.NewFromUint64(*s.vramTotal)
			mem.PerDevice[g.id] = sdk.Measurement{Value: used, Capacity: &total}
			if !seen {
				memUsed, memTotal = memUsed.Add(used), memTotal.Add(total)
			}
		}
		if s.tempMilli != nil {
			v := decimal.New(int64(*s.tempMilli), -3)
			temp.PerDevice[g.id] = sdk.Measurement{Value: v}
			if !seen {
				tempSum, tempCount = tempSum.Add(v), tempCount+1
			}
		}
		if s.powerMicro != nil {
			m := sdk.Measurement{Value: decimal.New(int64(*s.powerMicro), -6)}
			if s.capMicro != nil {
				c := decimal.New(int64(*s.capMicro), -6)
				m.Capacity = &c
			}
			power.PerDevice[g.id] = m
			if !seen {
				powerSum = powerSum.Add(m.Value)
				if m.Capacity != nil {
					powerCap = powerCap.Add(*m.Capacity)
				} else {
					powerCapKnown = false
				}
			}
		}
	}
	var out []sdk.Metric
	if len(util.PerDevice) > 0 {
		util.PerNode = &sdk.Measurement{Value: utilSum, Capacity: &utilCap}
		out = append(out, util)
	}
	if len(mem.PerDevice) > 0 {
		mem.PerNode = &sdk.Measurement{Value: memUsed, Capacity: &memTotal}
		out = append(out, mem)
	}
	if tempCount > 0 {
		// The node's temperature is the mean over GPUs.
		temp.PerNode = &sdk.Measurement{Value: tempSum.DivRound(decimal.NewFromInt(int64(tempCount)), 1)}
		out = append(out, temp)
	}
	if len(power.PerDevice) > 0 {
		power.PerNode = &sdk.Measurement{Value: powerSum}
		if powerCapKnown {
			power.PerNode.Capacity = &powerCap
		}
		out = append(out, power)
	}
	return out, nil
}

// ContainerMetrics reports nothing: sysfs has no per-process GPU
// accounting (that needs the amdgpu fdinfo of each container process,
// which this plugin does not read yet).
func (p *Plugin) ContainerMetrics(context.Context, []sdk.ContainerRef) ([]sdk.Metric, error) {
	return nil, nil
}
