//go:build linux && cgo

// Package nvmlmock builds go-nvml mocks of an H200 for tests of the real
// NVML driver: hardware is faked below go-nvml, everything above runs.
package nvmlmock

import (
	"errors"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// H200 numbers from issue #19: v1 counts the driver's reservation as used,
// nvidia-smi (v2) does not.
const (
	H200Total    = 150_754_820_096
	H200Reserved = 644_939_776
	H200UsedV2   = 22_669_623_296 // 21,619 MiB
)

// GPU is one whole GPU as go-nvml's mock serves it. v2 answers
// memV2Ret; v1 answers used+reserved, as real drivers do.
func GPU(memV2Ret nvml.Return) *mock.Device {
	util, temp, power, limit := uint32(99), uint32(59), uint32(690_000), uint32(700_000)
	return &mock.Device{
		GetUUIDFunc: func() (string, nvml.Return) { return "GPU-h200-0", nvml.SUCCESS },
		GetNameFunc: func() (string, nvml.Return) { return "NVIDIA H200", nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			used := uint64(H200UsedV2 + H200Reserved)
			return nvml.Memory{Total: H200Total, Used: used, Free: H200Total - used}, nvml.SUCCESS
		},
		GetMemoryInfo_v2Func: func() (nvml.Memory_v2, nvml.Return) {
			if memV2Ret != nvml.SUCCESS {
				return nvml.Memory_v2{}, memV2Ret
			}
			return nvml.Memory_v2{Total: H200Total, Reserved: H200Reserved, Used: H200UsedV2,
				Free: H200Total - H200UsedV2 - H200Reserved}, nvml.SUCCESS
		},
		GetPciInfoFunc:               func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{}, nvml.ERROR_NOT_SUPPORTED },
		GetCudaComputeCapabilityFunc: func() (int, int, nvml.Return) { return 9, 0, nvml.SUCCESS },
		GetAttributesFunc: func() (nvml.DeviceAttributes, nvml.Return) {
			return nvml.DeviceAttributes{}, nvml.ERROR_NOT_SUPPORTED
		},
		GetNumGpuCoresFunc: func() (int, nvml.Return) { return 132 * 128, nvml.SUCCESS },
		GetMigModeFunc:     func() (int, int, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED },
		GetTemperatureFunc: func(nvml.TemperatureSensors) (uint32, nvml.Return) { return temp, nvml.SUCCESS },
		GetPowerUsageFunc:  func() (uint32, nvml.Return) { return power, nvml.SUCCESS },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: util, Memory: 40}, nvml.SUCCESS
		},
		GetEnforcedPowerLimitFunc: func() (uint32, nvml.Return) { return limit, nvml.SUCCESS },
	}
}

// Library serves one GPU and says which optional symbols it has.
// nvmlDeviceGetTemperatureV is always missing: its go-nvml handler calls C
// directly and cannot be mocked, so the fallback is what runs here.
func Library(dev *mock.Device, symbols ...string) *mock.Interface {
	return &mock.Interface{
		InitFunc:                   func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:               func() nvml.Return { return nvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return "580.159", nvml.SUCCESS },
		// No health events: the monitor then just sleeps.
		EventSetCreateFunc:         func() (nvml.EventSet, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED },
		DeviceGetCountFunc:         func() (int, nvml.Return) { return 1, nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(int) (nvml.Device, nvml.Return) { return dev, nvml.SUCCESS },
		ExtensionsFunc: func() nvml.ExtendedInterface {
			return &mock.ExtendedInterface{LookupSymbolFunc: func(name string) error {
				for _, s := range symbols {
					if s == name {
						return nil
					}
				}
				return errors.New("undefined symbol " + name)
			}}
		},
	}
}
