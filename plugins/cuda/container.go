package cuda

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// minMultiprocessors is the SM count a fractional share never goes below
// (upstream's TF_MIN_GPU_MULTIPROCESSOR_COUNT floor).
const minMultiprocessors = 4

// allocatedGPU is one device of an allocation with its amount.
type allocatedGPU struct {
	gpuEntry
	amount decimal.Decimal
}

// resolveAllocation checks the allocation against the inventory and returns
// the devices in inventory (NVML) order.
func (p *Plugin) resolveAllocation(alloc sdk.Allocation) ([]allocatedGPU, error) {
	byID := make(map[string]int, len(p.gpus))
	for i, g := range p.gpus {
		byID[g.id] = i
	}
	slots := make([]string, 0, len(alloc))
	for slot := range alloc {
		slots = append(slots, slot)
	}
	slices.Sort(slots)
	picked := map[int]decimal.Decimal{}
	for _, slot := range slots {
		if !sdk.SlotBelongsTo(kindKey, slot) {
			return nil, fmt.Errorf("slot %q does not belong to the cuda plugin", slot)
		}
		for id, amount := range alloc[slot] {
			if amount.IsZero() {
				continue
			}
			i, ok := byID[id]
			if !ok {
				return nil, fmt.Errorf("slot %q: device %q is not a known CUDA device (known: %s)", slot, id, p.knownIDsLocked())
			}
			g := p.gpus[i]
			switch {
			case g.slot != slot:
				return nil, fmt.Errorf("slot %q: device %q provides slot %q", slot, id, g.slot)
			case amount.IsNegative() || amount.GreaterThan(g.capacity):
				return nil, fmt.Errorf("slot %q: device %q: amount %s is outside 0..%s", slot, id, amount, g.capacity)
			}
			if _, dup := picked[i]; dup {
				return nil, fmt.Errorf("device %q is allocated twice", id)
			}
			picked[i] = amount
		}
	}
	indices := make([]int, 0, len(picked))
	for i := range picked {
		indices = append(indices, i)
	}
	slices.Sort(indices)
	out := make([]allocatedGPU, 0, len(indices))
	for _, i := range indices {
		out = append(out, allocatedGPU{gpuEntry: p.gpus[i], amount: picked[i]})
	}
	return out, nil
}

func (p *Plugin) knownIDsLocked() string {
	ids := make([]string, 0, len(p.gpus))
	for _, g := range p.gpus {
		ids = append(ids, g.id)
	}
	return pluginkit.KnownIDs(ids)
}

// shareSpec is a fractional share's memory and SM limit, upstream mock's
// _share_to_spec.
func shareSpec(share decimal.Decimal, cfg config) (memory decimal.Decimal, multiprocessors int64) {
	memory = decimal.NewFromUint64(cfg.unitMem).Mul(share).Truncate(0)
	multiprocessors = decimal.NewFromInt(int64(cfg.unitProc)).Mul(share).IntPart()
	return memory, max(multiprocessors, minMultiprocessors)
}

// PrepareContainer makes the allocated GPUs visible to the container and
// records them for resource.txt.
func (p *Plugin) PrepareContainer(_ context.Context, req sdk.PrepareRequest) (sdk.ContainerSpec, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gpus, err := p.resolveAllocation(req.Allocation)
	if err != nil {
		return sdk.ContainerSpec{}, err
	}
	spec := sdk.ContainerSpec{Env: map[string]string{}, ResourceData: map[string]string{}}
	if len(gpus) > 0 && !p.attach.usable {
		return sdk.ContainerSpec{}, fmt.Errorf("cannot attach GPUs to the container: %s (set [plugins.cuda] %s)", p.attach.reason, keyAttachMethod)
	}
	uuids := make([]string, 0, len(gpus))
	globalIDs := make([]string, 0, len(gpus))
	var memLimits, procLimits []string
	onlyWhole := true
	for i, g := range gpus {
		uuids = append(uuids, g.UUID)
		globalIDs = append(globalIDs, strconv.Itoa(i)+":"+g.id)
		attached := sdk.AttachedDevice{DeviceID: g.id, ModelName: g.Name, Data: map[string]string{
			"smp": strconv.FormatUint(uint64(g.MultiprocessorCount), 10),
			"mem": strconv.FormatUint(g.MemoryTotal, 10),
		}}
		if g.slot == slotShares {
			onlyWhole = false
			mem, smp := shareSpec(g.amount, p.cfg)
			memLimits = append(memLimits, g.id+":"+sdk.FormatBinarySize(mem))
			procLimits = append(procLimits, g.id+":"+strconv.FormatInt(smp, 10))
			attached.Data["smp"] = strconv.FormatInt(smp, 10)
			attached.Data["mem"] = mem.String()
		}
		spec.AttachedDevices = append(spec.AttachedDevices, attached)
	}
	attachSpec(p.attach.method, uuids, &spec)
	if len(gpus) == 0 {
		return spec, nil
	}
	spec.ResourceData["CUDA_GLOBAL_DEVICE_IDS"] = strings.Join(globalIDs, ",")
	// Whole GPUs and MIG instances are not virtualised, as upstream's mock.
	spec.ResourceData["CUDA_RESOURCE_VIRTUALIZED"] = "0"
	if p.cfg.mode == modeFractional && !onlyWhole {
		spec.ResourceData["CUDA_RESOURCE_VIRTUALIZED"] = "1"
		spec.ResourceData["CUDA_MEMORY_LIMITS"] = strings.Join(memLimits, ",")
		spec.ResourceData["CUDA_PROCESSOR_LIMITS"] = strings.Join(procLimits, ",")
	}
	return spec, nil
}

// RestoreAllocation reads the cuda slots' <SLOT>_SHARES lines of
// resource.txt: CUDA.DEVICE_SHARES, CUDA.SHARES_SHARES and one line per MIG
// slot. Devices that are gone are kept: the container still holds them.
func (p *Plugin) RestoreAllocation(_ context.Context, req sdk.RestoreRequest) (sdk.Allocation, error) {
	return pluginkit.RestoreShares(req.ResourceData, kindKey)
}
