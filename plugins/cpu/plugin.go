// Package cpu is the intrinsic compute plugin for the cpu and mem slots: it
// reads usable cores, NUMA layout and memory from cgroups, sysfs and procfs,
// turns allocations into Docker cpuset and memory limits, and measures the
// node and containers.
package cpu

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shopspring/decimal"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/proto/sdk"
)

// Version is this plugin's version, reported in Describe.
const Version = "0.1.0"

const (
	kindCPU = "cpu"
	kindMem = "mem"
	// memDeviceID is the single memory device, as upstream names it.
	memDeviceID = "root"
)

// Plugin implements sdk.Plugin for the cpu and mem kinds. It keeps no
// allocation state; it holds only its configuration and the previous
// /proc/stat sample that node CPU utilization is a delta against.
type Plugin struct {
	logger hclog.Logger
	now    func() time.Time
	// newReader builds the host reader for a configuration; tests replace
	// the affinity and CPU-count fallbacks through it.
	newReader func(config) hostReader

	cfg atomic.Pointer[config]

	sampleMu   sync.Mutex
	lastSample *cpuSample
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns a plugin reading the real host with the default roots until
// Configure says otherwise.
func New(logger hclog.Logger) *Plugin {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	p := &Plugin{
		logger: logger,
		now:    time.Now,
		newReader: func(c config) hostReader {
			return newHostReader(c.sysfsRoot, c.procfsRoot, c.cgroupRoot)
		},
	}
	cfg := defaultConfig()
	p.cfg.Store(&cfg)
	return p
}

func (p *Plugin) config() config { return *p.cfg.Load() }

func (p *Plugin) reader() (hostReader, config) {
	cfg := p.config()
	return p.newReader(cfg), cfg
}

// Describe returns the two intrinsic kinds with upstream's display metadata.
func (p *Plugin) Describe(_ context.Context) (sdk.Description, error) {
	return sdk.Description{
		Name:        "cpu",
		Version:     Version,
		APIVersions: []string{sdk.APIVersion},
		Kinds: []sdk.ResourceKind{
			{
				Key: kindCPU,
				SlotTypes: []sdk.SlotType{{
					Name:              "cpu",
					Kind:              sdk.SlotCount,
					HumanReadableName: "CPU",
					Description:       "CPU",
					DisplayUnit:       "Core",
					NumberFormat:      sdk.NumberFormat{Binary: false, RoundLength: 0},
					DisplayIcon:       "cpu",
				}},
				AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyEvenly},
			},
			{
				Key: kindMem,
				SlotTypes: []sdk.SlotType{{
					Name:              "mem",
					Kind:              sdk.SlotBytes,
					HumanReadableName: "RAM",
					Description:       "Memory",
					DisplayUnit:       "GiB",
					NumberFormat:      sdk.NumberFormat{Binary: true, RoundLength: 0},
					DisplayIcon:       "ram",
				}},
				AllocMap: sdk.AllocMapSpec{Kind: sdk.AllocDiscrete, Strategy: sdk.StrategyFill},
			},
		},
		// Upstream attaches these intrinsically, not through an entry point,
		// so there is no module path for allow-compute-plugins to name.
		UpstreamEntrypoints: nil,
		ExtraInfo:           machineInfo(),
	}, nil
}

// machineInfo is upstream CPUPlugin.extra_info: machine and OS as uname
// reports them ("x86_64", "Linux").
func machineInfo() map[string]string {
	info := map[string]string{"agent_version": Version}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		info["machine"] = unix.ByteSliceToString(u.Machine[:])
		info["os_type"] = unix.ByteSliceToString(u.Sysname[:])
	}
	return info
}

// Configure validates the [plugins.cpu] table and takes the first /proc/stat
// sample so the first NodeMetrics call already has a delta.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	p.cfg.Store(&cfg)
	reader := p.newReader(cfg)
	sample, err := p.takeSample(reader)
	p.sampleMu.Lock()
	p.lastSample = nil
	if err == nil {
		p.lastSample = &sample
	}
	p.sampleMu.Unlock()
	if err != nil {
		p.logger.Warn("cannot read /proc/stat; node cpu_util starts with the second measurement", "error", err)
	}
	if _, err := p.ListDevices(context.Background()); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	return nil
}

// hostFacts is one consistent read of the host.
type hostFacts struct {
	cores      []int
	coreSource string
	numaOf     map[int]int
	memory     memoryInfo
}

func readHostFacts(reader hostReader) (hostFacts, error) {
	cores, source, err := reader.usableCores()
	if err != nil {
		return hostFacts{}, err
	}
	numaOf, err := reader.numaNodes(cores)
	if err != nil {
		return hostFacts{}, err
	}
	mem, err := reader.memory()
	if err != nil {
		return hostFacts{}, err
	}
	return hostFacts{cores: cores, coreSource: source, numaOf: numaOf, memory: mem}, nil
}

// devices builds one device per usable core and the single memory device.
func devices(facts hostFacts, cfg config) []sdk.Device {
	out := make([]sdk.Device, 0, len(facts.cores)+1)
	for _, core := range facts.cores {
		out = append(out, sdk.Device{
			ID:              strconv.Itoa(core),
			NUMANode:        facts.numaOf[core],
			ProcessingUnits: uint32(cfg.cpuOvercommit),
			Health:          sdk.HealthHealthy,
			SlotName:        "cpu",
			Capacity:        decimal.NewFromInt(int64(cfg.cpuOvercommit)),
		})
	}
	memBytes := decimal.NewFromUint64(facts.memory.usable).Mul(cfg.memOvercommit).Floor()
	out = append(out, sdk.Device{
		ID: memDeviceID,
		// The kernel places memory; upstream reports node 0.
		NUMANode:    0,
		MemoryBytes: memBytes.BigInt().Uint64(),
		Health:      sdk.HealthHealthy,
		SlotName:    "mem",
		Capacity:    memBytes,
	})
	return out
}

// ListDevices reads the host and returns the cores and the memory device.
func (p *Plugin) ListDevices(_ context.Context) ([]sdk.Device, error) {
	reader, cfg := p.reader()
	facts, err := readHostFacts(reader)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devices(facts, cfg), nil
}

// WatchDevices sends the device list, then re-reads it every watch-interval
// and sends it again when a device appears, disappears, moves NUMA node or
// changes capacity. A failed re-read is logged and retried next tick.
func (p *Plugin) WatchDevices(ctx context.Context) (<-chan []sdk.Device, error) {
	first, err := p.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	interval := p.config().watchInterval
	out := make(chan []sdk.Device)
	go func() {
		defer close(out)
		send := func(devs []sdk.Device) bool {
			select {
			case out <- devs:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !send(first) {
			return
		}
		last := layoutOf(first)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			devs, err := p.ListDevices(ctx)
			if err != nil {
				p.logger.Warn("re-reading devices failed; keeping the last list", "error", err)
				continue
			}
			layout := layoutOf(devs)
			if maps.Equal(layout, last) {
				continue
			}
			last = layout
			if !send(devs) {
				return
			}
		}
	}()
	return out, nil
}

// deviceLayout is what a watcher compares: NUMA node and capacity by ID.
type deviceLayout struct {
	numa     int
	capacity string
}

func layoutOf(devs []sdk.Device) map[string]deviceLayout {
	out := make(map[string]deviceLayout, len(devs))
	for _, d := range devs {
		out[d.ID] = deviceLayout{numa: d.NUMANode, capacity: d.Capacity.String()}
	}
	return out
}

// PrepareContainer turns the cpu allocation into a sorted CpusetCpus and the
// mem allocation into Memory = MemorySwap (no swap, as upstream). An
// allocation naming a core that is not usable now, a memory device other
// than "root", a negative amount or a foreign slot is rejected.
func (p *Plugin) PrepareContainer(_ context.Context, req sdk.PrepareRequest) (sdk.ContainerSpec, error) {
	var spec sdk.ContainerSpec
	slots := slices.Sorted(maps.Keys(req.Allocation))
	for _, slot := range slots {
		amounts := req.Allocation[slot]
		switch slot {
		case "cpu":
			cpuset, err := p.cpusetFor(amounts)
			if err != nil {
				return sdk.ContainerSpec{}, fmt.Errorf("prepare container: %w", err)
			}
			spec.CpusetCpus = cpuset
		case "mem":
			limit, err := memoryLimitFor(amounts)
			if err != nil {
				return sdk.ContainerSpec{}, fmt.Errorf("prepare container: %w", err)
			}
			spec.MemoryBytes, spec.MemorySwapBytes = limit, limit
		default:
			return sdk.ContainerSpec{}, fmt.Errorf("prepare container: slot %q does not belong to the cpu plugin (it owns cpu and mem)", slot)
		}
	}
	return spec, nil
}

func (p *Plugin) cpusetFor(amounts map[string]decimal.Decimal) (string, error) {
	reader, _ := p.reader()
	usable, _, err := reader.usableCores()
	if err != nil {
		return "", err
	}
	var cores []int
	for _, id := range slices.Sorted(maps.Keys(amounts)) {
		amount := amounts[id]
		if amount.IsNegative() {
			return "", fmt.Errorf("cpu allocation for core %q is negative (%s)", id, amount)
		}
		if amount.IsZero() {
			continue
		}
		core, err := parseCPUIndex(id)
		if err != nil || !slices.Contains(usable, core) {
			return "", fmt.Errorf("cpu allocation names core %q, which is not a usable core (usable: %s)", id, FormatCoreList(usable))
		}
		cores = append(cores, core)
	}
	return FormatCoreList(cores), nil
}

func memoryLimitFor(amounts map[string]decimal.Decimal) (int64, error) {
	total := decimal.Zero
	for _, id := range slices.Sorted(maps.Keys(amounts)) {
		amount := amounts[id]
		if id != memDeviceID {
			return 0, fmt.Errorf("mem allocation names device %q; the only memory device is %q", id, memDeviceID)
		}
		if amount.IsNegative() {
			return 0, fmt.Errorf("mem allocation is negative (%s)", amount)
		}
		total = total.Add(amount)
	}
	// Whole bytes, truncated like upstream's int().
	total = total.Truncate(0)
	if total.GreaterThan(decimal.NewFromInt(math.MaxInt64)) {
		return 0, fmt.Errorf("mem allocation %s bytes is too large", total)
	}
	return total.IntPart(), nil
}

// RestoreAllocation reads the cpu and mem shares back from resource.txt,
// falling back to the container's CpusetCpus (one share per core) and
// Memory when a line is missing, as containers from older agents may lack
// them.
func (p *Plugin) RestoreAllocation(_ context.Context, req sdk.RestoreRequest) (sdk.Allocation, error) {
	recorded, err := sdk.AllocationFromResourceData(req.ResourceData, []string{kindCPU, kindMem})
	if err != nil {
		return nil, fmt.Errorf("restore allocation: %w", err)
	}
	alloc := sdk.Allocation{}
	if cpu := recorded["cpu"]; len(cpu) > 0 {
		alloc["cpu"] = cpu
	} else if req.CpusetCpus != "" {
		cores, err := ParseCPUList(req.CpusetCpus)
		if err != nil {
			return nil, fmt.Errorf("restore allocation: container CpusetCpus: %w", err)
		}
		shares := make(map[string]decimal.Decimal, len(cores))
		for _, c := range cores {
			shares[strconv.Itoa(c)] = decimal.NewFromInt(1)
		}
		alloc["cpu"] = shares
	}
	if mem := recorded["mem"]; len(mem) > 0 {
		alloc["mem"] = mem
	} else if req.MemoryBytes > 0 {
		alloc["mem"] = map[string]decimal.Decimal{memDeviceID: decimal.NewFromInt(req.MemoryBytes)}
	}
	return alloc, nil
}

// HardwareInfo reports healthy with the host's shape, or unhealthy with the
// reason when the host cannot be read.
func (p *Plugin) HardwareInfo(_ context.Context) (sdk.HardwareInfo, error) {
	reader, _ := p.reader()
	facts, err := readHostFacts(reader)
	if err != nil {
		return sdk.HardwareInfo{Status: sdk.HealthUnhealthy, StatusInfo: err.Error()}, nil
	}
	nodes := map[int]bool{}
	for _, c := range facts.cores {
		nodes[facts.numaOf[c]] = true
	}
	cgroupVersion := "1"
	if reader.cgroupV2() {
		cgroupVersion = "2"
	}
	return sdk.HardwareInfo{
		Status:     sdk.HealthHealthy,
		StatusInfo: fmt.Sprintf("%d usable cores on %d NUMA nodes, %d bytes of memory", len(facts.cores), len(nodes), facts.memory.usable),
		Metadata: map[string]string{
			"cores":               strconv.Itoa(len(facts.cores)),
			"core_list":           FormatCoreList(facts.cores),
			"core_source":         facts.coreSource,
			"numa_nodes":          strconv.Itoa(len(nodes)),
			"memory_total_bytes":  strconv.FormatUint(facts.memory.total, 10),
			"memory_usable_bytes": strconv.FormatUint(facts.memory.usable, 10),
			"memory_limit_source": facts.memory.limitSource,
			"cgroup_version":      cgroupVersion,
		},
	}, nil
}
