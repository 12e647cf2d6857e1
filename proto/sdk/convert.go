package sdk

import (
	"fmt"

	"github.com/shopspring/decimal"

	pluginv1 "github.com/baiagent/baiagent/proto/gen/bai/plugin/v1"
)

// Conversions between the wire messages and the plain Go contract. Decimals
// travel as strings; a malformed one is an error naming the field.

func parseDecimal(field, s string) (decimal.Decimal, error) {
	if s == "" {
		return decimal.Zero, nil
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Zero, fmt.Errorf("%s: invalid decimal %q: %w", field, s, err)
	}
	return d, nil
}

func decimalString(d decimal.Decimal) string { return d.String() }

func descriptionToProto(d Description) *pluginv1.DescribeResponse {
	out := &pluginv1.DescribeResponse{
		Name:                d.Name,
		Version:             d.Version,
		ApiVersions:         d.APIVersions,
		UpstreamEntrypoints: d.UpstreamEntrypoints,
		ExtraInfo:           d.ExtraInfo,
	}
	for _, k := range d.Kinds {
		pk := &pluginv1.ResourceKind{
			Key:                   k.Key,
			ExclusiveSlotPatterns: k.ExclusiveSlotPatterns,
			AllocMap: &pluginv1.AllocMapSpec{
				Kind:               pluginv1.AllocKind(k.AllocMap.Kind),
				Strategy:           pluginv1.AllocStrategy(k.AllocMap.Strategy),
				AllowFragmentation: k.AllocMap.AllowFragmentation,
			},
		}
		if !k.AllocMap.Quantum.IsZero() {
			pk.AllocMap.Quantum = decimalString(k.AllocMap.Quantum)
		}
		if !k.AllocMap.MinMemory.IsZero() {
			pk.AllocMap.MinMemory = decimalString(k.AllocMap.MinMemory)
		}
		for _, st := range k.SlotTypes {
			pk.SlotTypes = append(pk.SlotTypes, &pluginv1.SlotType{
				Name:              st.Name,
				Kind:              pluginv1.SlotKind(st.Kind),
				HumanReadableName: st.HumanReadableName,
				Description:       st.Description,
				DisplayUnit:       st.DisplayUnit,
				NumberFormat:      &pluginv1.NumberFormat{Binary: st.NumberFormat.Binary, RoundLength: int32(st.NumberFormat.RoundLength)},
				DisplayIcon:       st.DisplayIcon,
			})
		}
		out.Kinds = append(out.Kinds, pk)
	}
	return out
}

func descriptionFromProto(p *pluginv1.DescribeResponse) (Description, error) {
	d := Description{
		Name:                p.GetName(),
		Version:             p.GetVersion(),
		APIVersions:         p.GetApiVersions(),
		UpstreamEntrypoints: p.GetUpstreamEntrypoints(),
		ExtraInfo:           p.GetExtraInfo(),
	}
	for _, pk := range p.GetKinds() {
		k := ResourceKind{Key: pk.GetKey(), ExclusiveSlotPatterns: pk.GetExclusiveSlotPatterns()}
		am := pk.GetAllocMap()
		k.AllocMap.Kind = AllocKind(am.GetKind())
		k.AllocMap.Strategy = AllocStrategy(am.GetStrategy())
		k.AllocMap.AllowFragmentation = am.GetAllowFragmentation()
		var err error
		if k.AllocMap.Quantum, err = parseDecimal("kind "+k.Key+" alloc_map.quantum", am.GetQuantum()); err != nil {
			return Description{}, err
		}
		if k.AllocMap.MinMemory, err = parseDecimal("kind "+k.Key+" alloc_map.min_memory", am.GetMinMemory()); err != nil {
			return Description{}, err
		}
		for _, st := range pk.GetSlotTypes() {
			k.SlotTypes = append(k.SlotTypes, SlotType{
				Name:              st.GetName(),
				Kind:              SlotKind(st.GetKind()),
				HumanReadableName: st.GetHumanReadableName(),
				Description:       st.GetDescription(),
				DisplayUnit:       st.GetDisplayUnit(),
				NumberFormat:      NumberFormat{Binary: st.GetNumberFormat().GetBinary(), RoundLength: int(st.GetNumberFormat().GetRoundLength())},
				DisplayIcon:       st.GetDisplayIcon(),
			})
		}
		d.Kinds = append(d.Kinds, k)
	}
	return d, nil
}

func devicesToProto(devs []Device) []*pluginv1.Device {
	out := make([]*pluginv1.Device, 0, len(devs))
	for _, d := range devs {
		out = append(out, &pluginv1.Device{
			Id:                d.ID,
			Model:             d.Model,
			Uuid:              d.UUID,
			PciBusId:          d.PCIBusID,
			NumaNode:          int32(d.NUMANode),
			MemoryBytes:       d.MemoryBytes,
			ProcessingUnits:   d.ProcessingUnits,
			Health:            pluginv1.Health(d.Health),
			HealthDescription: d.HealthDescription,
			Attributes:        d.Attributes,
			SlotName:          d.SlotName,
			Capacity:          decimalString(d.Capacity),
		})
	}
	return out
}

func devicesFromProto(devs []*pluginv1.Device) ([]Device, error) {
	out := make([]Device, 0, len(devs))
	for _, d := range devs {
		capacity, err := parseDecimal(fmt.Sprintf("device %q capacity", d.GetId()), d.GetCapacity())
		if err != nil {
			return nil, err
		}
		out = append(out, Device{
			ID:                d.GetId(),
			Model:             d.GetModel(),
			UUID:              d.GetUuid(),
			PCIBusID:          d.GetPciBusId(),
			NUMANode:          int(d.GetNumaNode()),
			MemoryBytes:       d.GetMemoryBytes(),
			ProcessingUnits:   d.GetProcessingUnits(),
			Health:            Health(d.GetHealth()),
			HealthDescription: d.GetHealthDescription(),
			Attributes:        d.GetAttributes(),
			SlotName:          d.GetSlotName(),
			Capacity:          capacity,
		})
	}
	return out, nil
}

func allocationToProto(a Allocation) *pluginv1.Allocation {
	out := &pluginv1.Allocation{Slots: make(map[string]*pluginv1.DeviceAmounts, len(a))}
	for slot, devs := range a {
		amounts := make(map[string]string, len(devs))
		for id, amount := range devs {
			amounts[id] = decimalString(amount)
		}
		out.Slots[slot] = &pluginv1.DeviceAmounts{Amounts: amounts}
	}
	return out
}

func allocationFromProto(p *pluginv1.Allocation) (Allocation, error) {
	out := make(Allocation, len(p.GetSlots()))
	for slot, devs := range p.GetSlots() {
		amounts := make(map[string]decimal.Decimal, len(devs.GetAmounts()))
		for id, s := range devs.GetAmounts() {
			d, err := parseDecimal(fmt.Sprintf("allocation %s/%s", slot, id), s)
			if err != nil {
				return nil, err
			}
			amounts[id] = d
		}
		out[slot] = amounts
	}
	return out, nil
}

func specToProto(s ContainerSpec) *pluginv1.ContainerSpec {
	out := &pluginv1.ContainerSpec{
		Env:             s.Env,
		CdiDevices:      s.CDIDevices,
		GroupAdd:        s.GroupAdd,
		ResourceData:    s.ResourceData,
		CpusetCpus:      s.CpusetCpus,
		MemoryBytes:     s.MemoryBytes,
		MemorySwapBytes: s.MemorySwapBytes,
		Runtime:         s.Runtime,
		Hooks:           s.Hooks,
		DockerNetworks:  s.DockerNetworks,
		AllowedSyscalls: s.AllowedSyscalls,
	}
	for _, d := range s.Devices {
		out.Devices = append(out.Devices, &pluginv1.DeviceNode{HostPath: d.HostPath, ContainerPath: d.ContainerPath, CgroupPermissions: d.CgroupPermissions})
	}
	for _, m := range s.Mounts {
		out.Mounts = append(out.Mounts, &pluginv1.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	for _, r := range s.DeviceRequests {
		pr := &pluginv1.DeviceRequest{Driver: r.Driver, Count: int32(r.Count), DeviceIds: r.DeviceIDs, Options: r.Options}
		for _, c := range r.Capabilities {
			pr.Capabilities = append(pr.Capabilities, &pluginv1.Capabilities{Names: c})
		}
		out.DeviceRequests = append(out.DeviceRequests, pr)
	}
	for _, a := range s.AttachedDevices {
		out.AttachedDevices = append(out.AttachedDevices, &pluginv1.AttachedDevice{DeviceId: a.DeviceID, ModelName: a.ModelName, Data: a.Data})
	}
	return out
}

func specFromProto(p *pluginv1.ContainerSpec) ContainerSpec {
	out := ContainerSpec{
		Env:             p.GetEnv(),
		CDIDevices:      p.GetCdiDevices(),
		GroupAdd:        p.GetGroupAdd(),
		ResourceData:    p.GetResourceData(),
		CpusetCpus:      p.GetCpusetCpus(),
		MemoryBytes:     p.GetMemoryBytes(),
		MemorySwapBytes: p.GetMemorySwapBytes(),
		Runtime:         p.GetRuntime(),
		Hooks:           p.GetHooks(),
		DockerNetworks:  p.GetDockerNetworks(),
		AllowedSyscalls: p.GetAllowedSyscalls(),
	}
	for _, d := range p.GetDevices() {
		out.Devices = append(out.Devices, DeviceNode{HostPath: d.GetHostPath(), ContainerPath: d.GetContainerPath(), CgroupPermissions: d.GetCgroupPermissions()})
	}
	for _, m := range p.GetMounts() {
		out.Mounts = append(out.Mounts, Mount{Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly()})
	}
	for _, r := range p.GetDeviceRequests() {
		dr := DeviceRequest{Driver: r.GetDriver(), Count: int(r.GetCount()), DeviceIDs: r.GetDeviceIds(), Options: r.GetOptions()}
		for _, c := range r.GetCapabilities() {
			dr.Capabilities = append(dr.Capabilities, c.GetNames())
		}
		out.DeviceRequests = append(out.DeviceRequests, dr)
	}
	for _, a := range p.GetAttachedDevices() {
		out.AttachedDevices = append(out.AttachedDevices, AttachedDevice{DeviceID: a.GetDeviceId(), ModelName: a.GetModelName(), Data: a.GetData()})
	}
	return out
}

func measurementToProto(m Measurement) *pluginv1.Measurement {
	out := &pluginv1.Measurement{Value: decimalString(m.Value)}
	if m.Capacity != nil {
		out.Capacity = decimalString(*m.Capacity)
	}
	return out
}

func measurementFromProto(field string, p *pluginv1.Measurement) (Measurement, error) {
	v, err := parseDecimal(field+" value", p.GetValue())
	if err != nil {
		return Measurement{}, err
	}
	m := Measurement{Value: v}
	if p.GetCapacity() != "" {
		c, err := parseDecimal(field+" capacity", p.GetCapacity())
		if err != nil {
			return Measurement{}, err
		}
		m.Capacity = &c
	}
	return m, nil
}

func measurementMapToProto(m map[string]Measurement) map[string]*pluginv1.Measurement {
	if m == nil {
		return nil
	}
	out := make(map[string]*pluginv1.Measurement, len(m))
	for k, v := range m {
		out[k] = measurementToProto(v)
	}
	return out
}

func measurementMapFromProto(field string, p map[string]*pluginv1.Measurement) (map[string]Measurement, error) {
	if len(p) == 0 {
		return nil, nil
	}
	out := make(map[string]Measurement, len(p))
	for k, v := range p {
		m, err := measurementFromProto(field+"["+k+"]", v)
		if err != nil {
			return nil, err
		}
		out[k] = m
	}
	return out, nil
}

func metricsToProto(ms []Metric) []*pluginv1.Metric {
	out := make([]*pluginv1.Metric, 0, len(ms))
	for _, m := range ms {
		pm := &pluginv1.Metric{
			Key:          m.Key,
			Type:         pluginv1.MetricType(m.Type),
			UnitHint:     m.UnitHint,
			PerDevice:    measurementMapToProto(m.PerDevice),
			PerContainer: measurementMapToProto(m.PerContainer),
		}
		if m.PerNode != nil {
			pm.PerNode = measurementToProto(*m.PerNode)
		}
		out = append(out, pm)
	}
	return out
}

func metricsFromProto(ps []*pluginv1.Metric) ([]Metric, error) {
	out := make([]Metric, 0, len(ps))
	for _, p := range ps {
		m := Metric{Key: p.GetKey(), Type: MetricType(p.GetType()), UnitHint: p.GetUnitHint()}
		if p.PerNode != nil {
			node, err := measurementFromProto("metric "+m.Key+" per_node", p.PerNode)
			if err != nil {
				return nil, err
			}
			m.PerNode = &node
		}
		var err error
		if m.PerDevice, err = measurementMapFromProto("metric "+m.Key+" per_device", p.GetPerDevice()); err != nil {
			return nil, err
		}
		if m.PerContainer, err = measurementMapFromProto("metric "+m.Key+" per_container", p.GetPerContainer()); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
