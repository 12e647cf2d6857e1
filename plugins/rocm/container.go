package rocm

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// resolveAllocation checks the allocation against the inventory and returns
// the devices in enumeration order, which is the order the container's ROCr
// will number them in.
func (p *Plugin) resolveAllocation(alloc sdk.Allocation) ([]gpu, error) {
	ids := make([]string, len(p.gpus))
	for i, d := range p.gpus {
		ids[i] = d.id
	}
	picked, err := pluginkit.WholeDevices(alloc, slotDevice, ids, kindKey, "device", "ROCm device")
	if err != nil {
		return nil, err
	}
	out := make([]gpu, 0, len(picked))
	for _, i := range picked {
		out = append(out, p.gpus[i])
	}
	return out, nil
}

// PrepareContainer passes /dev/kfd and each allocated device's DRM render
// and card nodes, adds the video and render groups, and numbers the
// devices 0..n-1 for HIP and ROCr as the container sees them. The device
// nodes are the isolation; the environment only orders them.
func (p *Plugin) PrepareContainer(_ context.Context, req sdk.PrepareRequest) (sdk.ContainerSpec, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gpus, err := p.resolveAllocation(req.Allocation)
	if err != nil {
		return sdk.ContainerSpec{}, err
	}
	spec := sdk.ContainerSpec{Env: map[string]string{}, ResourceData: map[string]string{}}
	if len(gpus) == 0 {
		return spec, nil
	}
	devRoot := p.cfg.DevRoot
	spec.Devices = append(spec.Devices, sdk.DeviceNode{
		HostPath: filepath.Join(devRoot, "kfd"), ContainerPath: "/dev/kfd", CgroupPermissions: "rwm",
	})
	visible := make([]string, 0, len(gpus))
	globalIDs := make([]string, 0, len(gpus))
	for i, g := range gpus {
		for _, host := range g.deviceNodes(devRoot) {
			spec.Devices = append(spec.Devices, sdk.DeviceNode{
				HostPath: host, ContainerPath: "/dev/dri/" + filepath.Base(host), CgroupPermissions: "rwm",
			})
		}
		visible = append(visible, strconv.Itoa(i))
		globalIDs = append(globalIDs, strconv.Itoa(i)+":"+g.id)
		spec.AttachedDevices = append(spec.AttachedDevices, sdk.AttachedDevice{
			DeviceID: g.id, ModelName: g.model, Data: map[string]string{
				"smp": strconv.FormatUint(uint64(g.computeUnits), 10),
				"mem": strconv.FormatUint(g.memBytes, 10),
			},
		})
	}
	spec.GroupAdd = []string{"video", "render"}
	spec.Env["HIP_VISIBLE_DEVICES"] = strings.Join(visible, ",")
	spec.Env["ROCR_VISIBLE_DEVICES"] = strings.Join(visible, ",")
	spec.ResourceData["ROCM_GLOBAL_DEVICE_IDS"] = strings.Join(globalIDs, ",")
	return spec, nil
}

// RestoreAllocation reads ROCM.DEVICE_SHARES from resource.txt. Devices
// that are gone are kept: the container still holds them.
func (p *Plugin) RestoreAllocation(_ context.Context, req sdk.RestoreRequest) (sdk.Allocation, error) {
	return pluginkit.RestoreShares(req.ResourceData, kindKey)
}
