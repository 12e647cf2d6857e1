package cuda

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/plugins/cuda/internal/nvmldriver"
	"github.com/baiagent/baiagent/proto/sdk"
)

// NodeMetrics samples every whole GPU. MIG instances have no utilisation
// or power of their own in NVML and are not sampled (as nomad-device-nvidia).
func (p *Plugin) NodeMetrics(ctx context.Context) ([]sdk.Metric, error) {
	p.mu.Lock()
	client := p.client
	gpus := slices.Clone(p.gpus)
	p.mu.Unlock()
	if client == nil || len(gpus) == 0 {
		return nil, nil
	}
	util := sdk.Metric{Key: "cuda_util", Type: sdk.MetricGauge, UnitHint: "percent", PerDevice: map[string]sdk.Measurement{}}
	mem := sdk.Metric{Key: "cuda_mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerDevice: map[string]sdk.Measurement{}}
	temp := sdk.Metric{Key: "cuda_temp", Type: sdk.MetricGauge, UnitHint: "Celsius", PerDevice: map[string]sdk.Measurement{}}
	power := sdk.Metric{Key: "cuda_power", Type: sdk.MetricGauge, UnitHint: "Watts", PerDevice: map[string]sdk.Measurement{}}
	hundred := decimal.NewFromInt(100)
	var utilSum, utilCap, memUsed, memTotal, tempSum, powerSum, powerCap decimal.Decimal
	tempCount, powerCapKnown := 0, true
	for _, g := range gpus {
		if g.IsMig() {
			continue
		}
		st, err := client.Status(ctx, g.Index)
		if err != nil {
			p.logger.Warn("cannot sample GPU", "device", g.id, "error", err)
			continue
		}
		if st.GPUUtilization != nil {
			v := decimal.NewFromInt(int64(*st.GPUUtilization))
			util.PerDevice[g.id] = sdk.Measurement{Value: v, Capacity: &hundred}
			utilSum, utilCap = utilSum.Add(v), utilCap.Add(hundred)
		}
		if st.MemoryUsed != nil {
			used, total := decimal.NewFromUint64(*st.MemoryUsed), decimal.NewFromUint64(g.MemoryTotal)
			mem.PerDevice[g.id] = sdk.Measurement{Value: used, Capacity: &total}
			memUsed, memTotal = memUsed.Add(used), memTotal.Add(total)
		}
		if st.TemperatureCelsius != nil {
			v := decimal.NewFromInt(int64(*st.TemperatureCelsius))
			temp.PerDevice[g.id] = sdk.Measurement{Value: v}
			tempSum, tempCount = tempSum.Add(v), tempCount+1
		}
		if st.PowerUsageMilliwatts != nil {
			m := sdk.Measurement{Value: milliToUnit(*st.PowerUsageMilliwatts)}
			if st.PowerLimitMilliwatts != nil {
				limit := milliToUnit(*st.PowerLimitMilliwatts)
				m.Capacity = &limit
				powerCap = powerCap.Add(limit)
			} else {
				powerCapKnown = false
			}
			power.PerDevice[g.id] = m
			powerSum = powerSum.Add(m.Value)
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
		// The node's temperature is the mean, as upstream's mock reports.
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

func milliToUnit(v uint32) decimal.Decimal { return decimal.New(int64(v), -3) }

// ContainerMetrics reports cuda_util and cuda_mem for every container that
// was given GPUs, from its first sample on, even before it runs anything on
// them (upstream cuda_open's gather_container_measures):
//   - cuda_util: the sum of its whole GPUs' utilisation, capacity 100 per
//     GPU (MIG instances have no utilisation in NVML);
//   - cuda_mem: the memory used on its GPUs, capacity their total. A whole
//     GPU no other listed container holds counts its device-wide use, as
//     upstream; a GPU shared with others (fractional shares) or a MIG
//     instance counts only the memory of the container's own processes.
//
// A container's GPUs are the NVIDIA_VISIBLE_DEVICES this plugin put into
// its environment (every attach method sets it), read back from its init
// process, so the plugin needs no state of its own and works after a
// restart. A container without it (not started with our GPUs) gets
// cuda_mem only if NVML lists processes of it.
func (p *Plugin) ContainerMetrics(ctx context.Context, containers []sdk.ContainerRef) ([]sdk.Metric, error) {
	p.mu.Lock()
	client, procfsRoot := p.client, p.cfg.procfsRoot
	gpus := slices.Clone(p.gpus)
	p.mu.Unlock()
	if client == nil || len(containers) == 0 {
		return nil, nil
	}
	attached := make(map[string][]gpuEntry, len(containers))
	holders := map[string]int{}
	for _, c := range containers {
		visible, ok := visibleDevicesOf(procfsRoot, c.PID)
		if !ok {
			continue
		}
		devs := resolveVisible(visible, gpus)
		if len(devs) == 0 {
			continue
		}
		attached[c.ContainerID] = devs
		for _, g := range devs {
			holders[g.UUID]++
		}
	}

	statuses := map[int]*nvmldriver.DeviceStatus{}
	status := func(index int) *nvmldriver.DeviceStatus {
		if st, seen := statuses[index]; seen {
			return st
		}
		st, err := client.Status(ctx, index)
		if err != nil {
			p.logger.Warn("cannot sample GPU", "nvml_index", index, "error", err)
			statuses[index] = nil
			return nil
		}
		statuses[index] = &st
		return &st
	}
	// Process memory is listed per physical GPU (MIG instances count
	// against their parent) and only when some container needs it.
	var procMem map[int]map[string]uint64
	processMemory := func() map[int]map[string]uint64 {
		if procMem != nil {
			return procMem
		}
		procMem = map[int]map[string]uint64{}
		for _, index := range physicalIndices(gpus) {
			procs, err := client.Processes(ctx, index)
			if err != nil {
				p.logger.Warn("cannot list GPU processes", "nvml_index", index, "error", err)
				continue
			}
			for _, proc := range procs {
				cid, ok := containerOf(proc, containers, procfsRoot)
				if !ok {
					continue
				}
				if procMem[index] == nil {
					procMem[index] = map[string]uint64{}
				}
				procMem[index][cid] += proc.UsedMemory
			}
		}
		return procMem
	}

	util := sdk.Metric{Key: "cuda_util", Type: sdk.MetricUtilization, UnitHint: "percent", PerContainer: map[string]sdk.Measurement{}}
	mem := sdk.Metric{Key: "cuda_mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: map[string]sdk.Measurement{}}
	for _, c := range containers {
		devs, ok := attached[c.ContainerID]
		if !ok {
			continue
		}
		samples := make([]gpuSample, len(devs))
		for i, g := range devs {
			samples[i] = gpuSample{gpu: g, exclusive: !g.IsMig() && holders[g.UUID] == 1}
			if !g.IsMig() {
				samples[i].status = status(g.Index)
			}
			if !samples[i].exclusive {
				samples[i].processMemory = processMemory()[g.Index][c.ContainerID]
			}
		}
		u, m := kernelGPUMeasures(samples)
		if u != nil {
			util.PerContainer[c.ContainerID] = *u
		}
		if m != nil {
			mem.PerContainer[c.ContainerID] = *m
		}
	}
	// Containers without our GPUs: the memory of their GPU processes, if
	// any, over the total of the whole GPUs they run on.
	wholeTotal := map[int]uint64{}
	for _, g := range gpus {
		if !g.IsMig() {
			wholeTotal[g.Index] = g.MemoryTotal
		}
	}
	for _, index := range physicalIndices(gpus) {
		if len(attached) == len(containers) {
			break // all ours: no need to list processes
		}
		for cid, used := range processMemory()[index] {
			if _, ours := attached[cid]; ours {
				continue
			}
			m := mem.PerContainer[cid]
			m.Value = m.Value.Add(decimal.NewFromUint64(used))
			if total := wholeTotal[index]; total > 0 {
				c := decimal.NewFromUint64(total)
				if m.Capacity != nil {
					c = c.Add(*m.Capacity)
				}
				m.Capacity = &c
			}
			mem.PerContainer[cid] = m
		}
	}
	var out []sdk.Metric
	if len(util.PerContainer) > 0 {
		out = append(out, util)
	}
	if len(mem.PerContainer) > 0 {
		out = append(out, mem)
	}
	return out, nil
}

// gpuSample is what is known of one of a container's GPUs this round.
type gpuSample struct {
	gpu gpuEntry
	// exclusive: a whole GPU no other listed container holds.
	exclusive bool
	// status is the physical GPU's sample; nil for MIG or when it failed.
	status *nvmldriver.DeviceStatus
	// processMemory is the container's processes' memory on the physical
	// GPU, used when the GPU is not exclusive.
	processMemory uint64
}

// kernelGPUMeasures sums one container's GPUs into its cuda_util (nil when
// none of them reports utilisation) and cuda_mem (nil only without GPUs).
func kernelGPUMeasures(samples []gpuSample) (util, mem *sdk.Measurement) {
	var utilSum, utilCap, memUsed, memCap decimal.Decimal
	utilKnown := false
	for _, s := range samples {
		memCap = memCap.Add(decimal.NewFromUint64(s.gpu.MemoryTotal))
		switch {
		case s.exclusive && s.status != nil && s.status.MemoryUsed != nil:
			memUsed = memUsed.Add(decimal.NewFromUint64(*s.status.MemoryUsed))
		case !s.exclusive:
			memUsed = memUsed.Add(decimal.NewFromUint64(s.processMemory))
		}
		if s.status != nil && s.status.GPUUtilization != nil {
			utilKnown = true
			utilSum = utilSum.Add(decimal.NewFromInt(int64(*s.status.GPUUtilization)))
			utilCap = utilCap.Add(decimal.NewFromInt(100))
		}
	}
	if len(samples) == 0 {
		return nil, nil
	}
	mem = &sdk.Measurement{Value: memUsed, Capacity: &memCap}
	if utilKnown {
		util = &sdk.Measurement{Value: utilSum, Capacity: &utilCap}
	}
	return util, mem
}

// physicalIndices lists the NVML indices of the physical GPUs behind gpus.
func physicalIndices(gpus []gpuEntry) []int {
	var out []int
	for _, g := range gpus {
		if !slices.Contains(out, g.Index) {
			out = append(out, g.Index)
		}
	}
	return out
}

// resolveVisible maps NVIDIA_VISIBLE_DEVICES entries (UUIDs, as this plugin
// writes them, or NVML indices of whole GPUs) to the inventory, in the
// order given; unknown entries and duplicates are dropped.
func resolveVisible(visible []string, gpus []gpuEntry) []gpuEntry {
	var out []gpuEntry
	seen := map[string]bool{}
	for _, v := range visible {
		for _, g := range gpus {
			match := g.UUID == v || (!g.IsMig() && strconv.Itoa(g.Index) == v)
			if match && !seen[g.UUID] {
				seen[g.UUID] = true
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// visibleDevicesOf reads NVIDIA_VISIBLE_DEVICES from <procfs>/<pid>/environ.
// ok is false when the process or the variable is missing, or it names no
// specific device ("all", "none", "void", empty).
func visibleDevicesOf(procfsRoot string, pid int) ([]string, bool) {
	if pid <= 0 {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(procfsRoot, strconv.Itoa(pid), "environ"))
	if err != nil {
		return nil, false
	}
	return parseVisibleDevices(data)
}

// parseVisibleDevices finds NVIDIA_VISIBLE_DEVICES in a NUL-separated
// environment. The last occurrence wins, as for getenv after Docker
// appends its own copy for DeviceRequests.
func parseVisibleDevices(environ []byte) ([]string, bool) {
	const name = "NVIDIA_VISIBLE_DEVICES="
	value, found := "", false
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(name)); ok {
			value, found = string(v), true
		}
	}
	if !found {
		return nil, false
	}
	switch strings.TrimSpace(value) {
	case "", "all", "none", "void":
		return nil, false
	}
	var out []string
	for _, part := range strings.Split(value, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out, len(out) > 0
}

// containerOf finds the container a GPU process runs in.
func containerOf(proc nvmldriver.ProcessInfo, containers []sdk.ContainerRef, procfsRoot string) (string, bool) {
	for _, c := range containers {
		if c.PID > 0 && uint32(c.PID) == proc.PID {
			return c.ContainerID, true
		}
	}
	cgroups := processCgroups(procfsRoot, proc.PID)
	for _, c := range containers {
		want := "/" + strings.Trim(c.CgroupPath, "/")
		if want == "/" {
			continue
		}
		for _, path := range cgroups {
			if path == want || strings.HasPrefix(path, want+"/") {
				return c.ContainerID, true
			}
		}
	}
	return "", false
}

// processCgroups reads the cgroup paths of a process from
// <procfs>/<pid>/cgroup ("0::/system.slice/docker-….scope" on v2,
// "4:memory:/docker/…" on v1).
func processCgroups(procfsRoot string, pid uint32) []string {
	f, err := os.Open(filepath.Join(procfsRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var paths []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		parts := strings.SplitN(scanner.Text(), ":", 3)
		if len(parts) == 3 && parts[2] != "" {
			paths = append(paths, parts[2])
		}
	}
	return paths
}
