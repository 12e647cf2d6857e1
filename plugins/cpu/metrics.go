package cpu

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// msPerTick converts /proc/stat counters to milliseconds. They are in
// USER_HZ, which the kernel fixes at 100 for userspace on every
// architecture regardless of CONFIG_HZ.
const msPerTick = 10

// containerCPUUtilCapacity is upstream's capacity for container cpu_util:
// milliseconds of CPU time per second of one core.
const containerCPUUtilCapacity = 1000

type cpuSample struct {
	at    time.Time
	cores map[int]CoreTimes
}

func (p *Plugin) takeSample(reader hostReader) (cpuSample, error) {
	cores, err := reader.coreTimes()
	if err != nil {
		return cpuSample{}, err
	}
	return cpuSample{at: p.now(), cores: cores}, nil
}

// NodeMetrics measures node cpu_util, mem, disk, net_rx and net_tx (the
// last four as upstream's intrinsic memory plugin, agent/docker/
// intrinsic.py gather_node_measures). cpu_util is the busy time
// (user + system, as upstream) of each usable core since the previous call,
// in ms, with the elapsed wall time in ms as capacity; the node value is
// the sum over cores with the same capacity, as upstream. The very first
// call after start has no earlier sample and leaves cpu_util out.
func (p *Plugin) NodeMetrics(_ context.Context) ([]sdk.Metric, error) {
	reader, _ := p.reader()
	var metrics []sdk.Metric
	var errs []error

	if m, ok, err := p.nodeCPUUtil(reader); err != nil {
		errs = append(errs, err)
	} else if ok {
		metrics = append(metrics, m)
	}
	if mem, err := reader.memory(); err != nil {
		errs = append(errs, err)
	} else {
		used := decimal.NewFromUint64(mem.total - min(mem.total, mem.available))
		capacity := decimal.NewFromUint64(mem.total)
		metrics = append(metrics, sdk.Metric{
			Key:       "mem",
			Type:      sdk.MetricGauge,
			UnitHint:  "bytes",
			PerNode:   &sdk.Measurement{Value: used, Capacity: &capacity},
			PerDevice: map[string]sdk.Measurement{memDeviceID: {Value: used, Capacity: &capacity}},
		})
	}
	if disks, problems, err := reader.disks(); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, problems...)
		metrics = append(metrics, diskMetric(disks))
	}
	if net, err := reader.nodeNet(); err != nil {
		errs = append(errs, err)
	} else {
		metrics = append(metrics, netMetrics(net, func(v decimal.Decimal) sdk.Metric {
			return sdk.Metric{PerNode: &sdk.Measurement{Value: v}, PerDevice: map[string]sdk.Measurement{"node": {Value: v}}}
		})...)
	}
	if len(metrics) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("node metrics: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		p.logger.Warn("node metric unavailable", "error", err)
	}
	return metrics, nil
}

// diskMetric is node disk: used over total bytes per device and summed.
func diskMetric(disks []diskUsage) sdk.Metric {
	m := sdk.Metric{Key: "disk", Type: sdk.MetricGauge, UnitHint: "bytes", PerDevice: map[string]sdk.Measurement{}}
	var used, total decimal.Decimal
	for _, d := range disks {
		u, t := decimal.NewFromUint64(d.used), decimal.NewFromUint64(d.total)
		m.PerDevice[d.device] = sdk.Measurement{Value: u, Capacity: &t}
		used, total = used.Add(u), total.Add(t)
	}
	m.PerNode = &sdk.Measurement{Value: used, Capacity: &total}
	return m
}

// netMetrics turns byte counters into net_rx and net_tx; place puts a
// value where it belongs (per node, per container). The collector's
// policy reports their rate, as upstream's current_hook.
func netMetrics(net NetDev, place func(decimal.Decimal) sdk.Metric) []sdk.Metric {
	rx, tx := place(decimal.NewFromUint64(net.RxBytes)), place(decimal.NewFromUint64(net.TxBytes))
	rx.Key, tx.Key = "net_rx", "net_tx"
	rx.Type, tx.Type = sdk.MetricAccumulation, sdk.MetricAccumulation
	rx.UnitHint, tx.UnitHint = "bps", "bps"
	return []sdk.Metric{rx, tx}
}

func (p *Plugin) nodeCPUUtil(reader hostReader) (sdk.Metric, bool, error) {
	usable, _, err := reader.usableCores()
	if err != nil {
		return sdk.Metric{}, false, err
	}
	sample, err := p.takeSample(reader)
	if err != nil {
		return sdk.Metric{}, false, err
	}
	p.sampleMu.Lock()
	prev := p.lastSample
	p.lastSample = &sample
	p.sampleMu.Unlock()
	if prev == nil || !sample.at.After(prev.at) {
		return sdk.Metric{}, false, nil
	}
	interval := decimal.NewFromInt(sample.at.Sub(prev.at).Microseconds()).Div(decimal.NewFromInt(1000)).Round(3)
	perDevice := make(map[string]sdk.Measurement, len(usable))
	total := decimal.Zero
	for _, core := range usable {
		now, ok1 := sample.cores[core]
		before, ok2 := prev.cores[core]
		if !ok1 || !ok2 {
			continue
		}
		busyNow, busyBefore := now.User+now.System, before.User+before.System
		if busyNow < busyBefore {
			continue // the core went offline and came back; its counters restarted
		}
		used := decimal.NewFromUint64((busyNow - busyBefore) * msPerTick)
		perDevice[strconv.Itoa(core)] = sdk.Measurement{Value: used, Capacity: &interval}
		total = total.Add(used)
	}
	return sdk.Metric{
		Key:       "cpu_util",
		Type:      sdk.MetricUtilization,
		UnitHint:  "msec",
		PerNode:   &sdk.Measurement{Value: total, Capacity: &interval},
		PerDevice: perDevice,
	}, true, nil
}

// ContainerMetrics reads each container's cgroup: cpu_util and cpu_used
// (ms of CPU time; cpu_util with upstream's capacity 1000), mem (usage
// minus inactive file cache, capacity the cgroup limit or MemTotal when
// unlimited, as docker stats reports), io_read and io_write (bytes);
// net_rx and net_tx (bytes, from /proc/<pid>/net/dev) and io_scratch_size,
// always 0 as upstream, which stopped walking scratch dirs for their cost
// (agent/docker/intrinsic.py get_scratch_size). A
// container whose cgroup is gone is skipped; a file that cannot be parsed
// is logged and only that metric is skipped.
func (p *Plugin) ContainerMetrics(ctx context.Context, containers []sdk.ContainerRef) ([]sdk.Metric, error) {
	reader, _ := p.reader()
	cpuUtil := map[string]sdk.Measurement{}
	cpuUsed := map[string]sdk.Measurement{}
	mem := map[string]sdk.Measurement{}
	ioRead := map[string]sdk.Measurement{}
	ioWrite := map[string]sdk.Measurement{}
	netRx := map[string]sdk.Measurement{}
	netTx := map[string]sdk.Measurement{}
	scratch := map[string]sdk.Measurement{}
	var memTotal *decimal.Decimal
	utilCapacity := decimal.NewFromInt(containerCPUUtilCapacity)

	for _, ref := range containers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stats, problems, err := reader.containerStats(ref.CgroupPath)
		if errors.Is(err, errContainerGone) {
			continue
		}
		if err != nil {
			p.logger.Warn("cannot read container cgroup", "container", ref.ContainerID, "error", err)
			continue
		}
		for _, problem := range problems {
			p.logger.Warn("container metric unavailable", "container", ref.ContainerID, "error", problem)
		}
		id := ref.ContainerID
		if stats.cpuUsedMicros != nil {
			ms := decimal.NewFromUint64(*stats.cpuUsedMicros).Div(decimal.NewFromInt(1000)).Round(3)
			cpuUsed[id] = sdk.Measurement{Value: ms}
			cpuUtil[id] = sdk.Measurement{Value: ms, Capacity: &utilCapacity}
		}
		if stats.memUsed != nil {
			var capacity *decimal.Decimal
			if stats.memLimit != nil {
				c := decimal.NewFromUint64(*stats.memLimit)
				capacity = &c
			} else {
				if memTotal == nil {
					if info, err := reader.memory(); err == nil {
						t := decimal.NewFromUint64(info.total)
						memTotal = &t
					}
				}
				capacity = memTotal
			}
			mem[id] = sdk.Measurement{Value: decimal.NewFromUint64(*stats.memUsed), Capacity: capacity}
		}
		if stats.ioRead != nil {
			ioRead[id] = sdk.Measurement{Value: decimal.NewFromUint64(*stats.ioRead)}
			ioWrite[id] = sdk.Measurement{Value: decimal.NewFromUint64(*stats.ioWrite)}
		}
		// No counter beats a made-up 0, which would turn into a spike of
		// the rate on the next successful read.
		if net, err := reader.containerNet(ref.PID); err != nil {
			p.logger.Debug("container network unavailable", "container", id, "error", err)
		} else {
			netRx[id] = sdk.Measurement{Value: decimal.NewFromUint64(net.RxBytes)}
			netTx[id] = sdk.Measurement{Value: decimal.NewFromUint64(net.TxBytes)}
		}
		scratch[id] = sdk.Measurement{Value: decimal.Zero}
	}
	return []sdk.Metric{
		{Key: "cpu_util", Type: sdk.MetricUtilization, UnitHint: "percent", PerContainer: cpuUtil},
		{Key: "cpu_used", Type: sdk.MetricAccumulation, UnitHint: "msec", PerContainer: cpuUsed},
		{Key: "mem", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: mem},
		{Key: "io_read", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: ioRead},
		{Key: "io_write", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: ioWrite},
		{Key: "net_rx", Type: sdk.MetricAccumulation, UnitHint: "bps", PerContainer: netRx},
		{Key: "net_tx", Type: sdk.MetricAccumulation, UnitHint: "bps", PerContainer: netTx},
		{Key: "io_scratch_size", Type: sdk.MetricGauge, UnitHint: "bytes", PerContainer: scratch},
	}, nil
}
