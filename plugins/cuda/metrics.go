package cuda

import (
	"bufio"
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

// ContainerMetrics reports cuda_mem per container: the GPU memory of the
// compute processes NVML lists, matched to a container by its PID or by
// the process's cgroup. Containers without GPU processes are omitted.
func (p *Plugin) ContainerMetrics(ctx context.Context, containers []sdk.ContainerRef) ([]sdk.Metric, error) {
	p.mu.Lock()
	client, procfsRoot := p.client, p.cfg.procfsRoot
	gpus := slices.Clone(p.gpus)
	p.mu.Unlock()
	if client == nil || len(containers) == 0 {
		return nil, nil
	}
	// Processes are listed per physical GPU; MIG instances share a parent.
	physical := map[int]uint64{}
	for _, g := range gpus {
		if g.IsMig() {
			// Processes on a MIG instance are counted against the parent.
			if _, seen := physical[g.Index]; !seen {
				physical[g.Index] = 0
			}
			continue
		}
		physical[g.Index] = g.MemoryTotal
	}
	used := map[string]decimal.Decimal{}
	capacity := map[string]decimal.Decimal{}
	for index, total := range physical {
		procs, err := client.Processes(ctx, index)
		if err != nil {
			p.logger.Warn("cannot list GPU processes", "nvml_index", index, "error", err)
			continue
		}
		onThisGPU := map[string]bool{}
		for _, proc := range procs {
			cid, ok := containerOf(proc, containers, procfsRoot)
			if !ok {
				continue
			}
			used[cid] = used[cid].Add(decimal.NewFromUint64(proc.UsedMemory))
			if !onThisGPU[cid] {
				onThisGPU[cid] = true
				capacity[cid] = capacity[cid].Add(decimal.NewFromUint64(total))
			}
		}
	}
	if len(used) == 0 {
		return nil, nil
	}
	mem := sdk.Metric{Key: "cuda_mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: map[string]sdk.Measurement{}}
	for cid, v := range used {
		c := capacity[cid]
		m := sdk.Measurement{Value: v}
		if c.IsPositive() {
			m.Capacity = &c
		}
		mem.PerContainer[cid] = m
	}
	return []sdk.Metric{mem}, nil
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
