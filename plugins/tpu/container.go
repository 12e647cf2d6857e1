package tpu

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/proto/sdk"
	"github.com/baiagent/baiagent/proto/sdk/pluginkit"
)

// resolveAllocation checks the allocation against the inventory and returns
// the chips in host order.
func (p *Plugin) resolveAllocation(alloc sdk.Allocation) ([]chip, error) {
	ids := make([]string, len(p.chips))
	for i, d := range p.chips {
		ids[i] = d.id
	}
	picked, err := pluginkit.WholeDevices(alloc, slotDevice, ids, kindKey, "chip", "TPU chip")
	if err != nil {
		return nil, err
	}
	out := make([]chip, 0, len(picked))
	for _, i := range picked {
		if p.chips[i].kind == nodeNone {
			return nil, fmt.Errorf("chip %q has no device node: %s", p.chips[i].id, p.chips[i].reason)
		}
		out = append(out, p.chips[i])
	}
	return out, nil
}

// PrepareContainer passes the allocated chips' device nodes and sets
// libtpu's environment for one process using all of them.
//
// accel nodes are renumbered in the container (/dev/accel0..n-1), so the
// container-relative TPU_VISIBLE_CHIPS=0..n-1 names them. vfio nodes keep
// their group numbers, because libtpu finds a chip's group through sysfs;
// /dev/vfio/vfio is added once.
func (p *Plugin) PrepareContainer(_ context.Context, req sdk.PrepareRequest) (sdk.ContainerSpec, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	chips, err := p.resolveAllocation(req.Allocation)
	if err != nil {
		return sdk.ContainerSpec{}, err
	}
	spec := sdk.ContainerSpec{Env: map[string]string{}, ResourceData: map[string]string{}}
	if len(chips) == 0 {
		return spec, nil
	}
	devRoot := p.cfg.DevRoot
	visible := make([]string, 0, len(chips))
	globalIDs := make([]string, 0, len(chips))
	vfio := false
	for i, c := range chips {
		host := c.hostNodes(devRoot)[0]
		container := "/dev/accel" + strconv.Itoa(i)
		if c.kind == nodeVFIO {
			container, vfio = "/dev/vfio/"+filepath.Base(host), true
		}
		spec.Devices = append(spec.Devices, sdk.DeviceNode{HostPath: host, ContainerPath: container, CgroupPermissions: "rwm"})
		visible = append(visible, strconv.Itoa(i))
		globalIDs = append(globalIDs, strconv.Itoa(i)+":"+c.id)
		spec.AttachedDevices = append(spec.AttachedDevices, sdk.AttachedDevice{
			DeviceID: c.id, ModelName: modelName(c.info, c.known, c.deviceID), Data: map[string]string{
				"smp": strconv.FormatUint(uint64(c.info.tensorCores), 10),
				"mem": strconv.FormatUint(c.info.hbmBytes, 10),
			},
		})
	}
	if vfio {
		spec.Devices = append(spec.Devices, sdk.DeviceNode{
			HostPath: filepath.Join(devRoot, "vfio", "vfio"), ContainerPath: "/dev/vfio/vfio", CgroupPermissions: "rwm",
		})
	}
	spec.Env["TPU_VISIBLE_CHIPS"] = strings.Join(visible, ",")
	if bounds, ok := chipBounds(len(chips)); ok {
		spec.Env["TPU_CHIPS_PER_PROCESS_BOUNDS"] = bounds
		spec.Env["TPU_PROCESS_BOUNDS"] = "1,1,1"
	}
	spec.ResourceData["TPU_GLOBAL_DEVICE_IDS"] = strings.Join(globalIDs, ",")
	return spec, nil
}

// RestoreAllocation reads TPU.DEVICE_SHARES from resource.txt. Chips that
// are gone are kept: the container still holds them.
func (p *Plugin) RestoreAllocation(_ context.Context, req sdk.RestoreRequest) (sdk.Allocation, error) {
	return pluginkit.RestoreShares(req.ResourceData, kindKey)
}
