//go:build linux && cgo

package nvmldriver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// DefaultLibraryPath is the NVML library the driver loads.
const DefaultLibraryPath = "libnvidia-ml.so.1"

// nvmlDriver implements Driver over go-nvml.
type nvmlDriver struct {
	lib nvml.Interface
	// ready is set by a successful Init. Calling into go-nvml without a
	// loaded library kills the process with an unresolved symbol, so every
	// call checks it first.
	ready atomic.Bool
	// memoryV2 and temperatureV say whether the loaded library has
	// nvmlDeviceGetMemoryInfo_v2 and nvmlDeviceGetTemperatureV. go-nvml
	// binds lazily, so calling a symbol an old driver lacks would kill the
	// process; Init looks them up once.
	memoryV2, temperatureV bool

	mu sync.Mutex
	// events is created lazily by the first WaitEvent; eventsErr remembers
	// that the driver cannot deliver events so we do not retry every call.
	events    nvml.EventSet
	eventsErr error
}

// NewNVML returns the real driver. libraryPath "" means DefaultLibraryPath.
// Nothing is loaded until Init.
func NewNVML(libraryPath string) Driver {
	if libraryPath == "" {
		libraryPath = DefaultLibraryPath
	}
	return newNVMLFrom(nvml.New(nvml.WithLibraryPath(libraryPath)))
}

// NewNVMLFromLibrary returns the real driver over any go-nvml
// implementation; tests pass go-nvml's mocks.
func NewNVMLFromLibrary(lib nvml.Interface) Driver { return newNVMLFrom(lib) }

func newNVMLFrom(lib nvml.Interface) *nvmlDriver { return &nvmlDriver{lib: lib} }

// CgoEnabled reports whether this build can talk to a real NVML.
const CgoEnabled = true

func nvmlError(op string, ret nvml.Return) error {
	switch ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%s: %w", op, ErrLibraryNotFound)
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		return fmt.Errorf("%s: %w", op, ErrNotSupported)
	}
	return fmt.Errorf("%s: nvml: %s", op, ret.Error())
}

func (d *nvmlDriver) Init(context.Context) error {
	if err := nvmlError("init NVML", d.lib.Init()); err != nil {
		return err
	}
	ext := d.lib.Extensions()
	d.memoryV2 = ext.LookupSymbol("nvmlDeviceGetMemoryInfo_v2") == nil
	d.temperatureV = ext.LookupSymbol("nvmlDeviceGetTemperatureV") == nil
	d.ready.Store(true)
	return nil
}

// errNotReady answers calls made before a successful Init.
func (d *nvmlDriver) errNotReady(op string) error {
	if d.ready.Load() {
		return nil
	}
	return fmt.Errorf("%s: NVML is not initialised: %w", op, ErrLibraryNotFound)
}

func (d *nvmlDriver) Shutdown(context.Context) error {
	if !d.ready.Swap(false) {
		return nil
	}
	d.mu.Lock()
	if d.events != nil {
		_ = d.events.Free()
		d.events = nil
	}
	d.mu.Unlock()
	return nvmlError("shut down NVML", d.lib.Shutdown())
}

func (d *nvmlDriver) DriverVersion(context.Context) (string, error) {
	if err := d.errNotReady("driver version"); err != nil {
		return "", err
	}
	v, ret := d.lib.SystemGetDriverVersion()
	return v, nvmlError("driver version", ret)
}

func (d *nvmlDriver) DeviceCount(context.Context) (int, error) {
	if err := d.errNotReady("device count"); err != nil {
		return 0, err
	}
	n, ret := d.lib.DeviceGetCount()
	return n, nvmlError("device count", ret)
}

func (d *nvmlDriver) handle(index int) (nvml.Device, error) {
	if err := d.errNotReady(fmt.Sprintf("device %d", index)); err != nil {
		return nil, err
	}
	dev, ret := d.lib.DeviceGetHandleByIndex(index)
	if err := nvmlError(fmt.Sprintf("device %d handle", index), ret); err != nil {
		return nil, err
	}
	return dev, nil
}

// cString reads a NUL-terminated C char array.
func cString(chars []int8) string {
	b := make([]byte, 0, len(chars))
	for _, c := range chars {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func (d *nvmlDriver) DeviceInfo(_ context.Context, index int) (DeviceInfo, error) {
	dev, err := d.handle(index)
	if err != nil {
		return DeviceInfo{}, err
	}
	info := DeviceInfo{Index: index}
	var ret nvml.Return
	if info.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return DeviceInfo{}, nvmlError(fmt.Sprintf("device %d UUID", index), ret)
	}
	if info.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		return DeviceInfo{}, nvmlError(fmt.Sprintf("device %d name", index), ret)
	}
	if total, _, ret := d.memoryInfo(dev); ret == nvml.SUCCESS {
		info.MemoryTotal = total
	}
	if pci, ret := dev.GetPciInfo(); ret == nvml.SUCCESS {
		info.PCIBusID = cString(pci.BusId[:])
	}
	if major, minor, ret := dev.GetCudaComputeCapability(); ret == nvml.SUCCESS {
		info.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	// NVML gives the SM count through attributes only for MIG handles, so
	// whole GPUs fall back to CUDA cores divided by cores per SM.
	if attrs, ret := dev.GetAttributes(); ret == nvml.SUCCESS && attrs.MultiprocessorCount > 0 {
		info.MultiprocessorCount = attrs.MultiprocessorCount
	} else if cores, ret := dev.GetNumGpuCores(); ret == nvml.SUCCESS {
		info.MultiprocessorCount = MultiprocessorsFromCores(cores, info.ComputeCapability)
	}
	if current, _, ret := dev.GetMigMode(); ret == nvml.SUCCESS {
		info.MigEnabled = current == nvml.DEVICE_MIG_ENABLE
	}
	return info, nil
}

// migProfile takes the profile from a MIG device name such as
// "NVIDIA A100-SXM4-80GB MIG 1g.10gb".
func migProfile(name string) string {
	if _, profile, ok := strings.Cut(name, " MIG "); ok {
		return strings.TrimSpace(profile)
	}
	return ""
}

func (d *nvmlDriver) MigDevices(_ context.Context, index int) ([]MigDeviceInfo, error) {
	dev, err := d.handle(index)
	if err != nil {
		return nil, err
	}
	maxCount, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError(fmt.Sprintf("device %d MIG device count", index), ret)
	}
	var out []MigDeviceInfo
	for i := range maxCount {
		mig, ret := dev.GetMigDeviceHandleByIndex(i)
		if ret == nvml.ERROR_NOT_FOUND {
			continue // a free slot: no instance created there
		}
		if ret != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("device %d MIG %d", index, i), ret)
		}
		var m MigDeviceInfo
		if m.UUID, ret = mig.GetUUID(); ret != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("device %d MIG %d UUID", index, i), ret)
		}
		if name, ret := mig.GetName(); ret == nvml.SUCCESS {
			m.Profile = migProfile(name)
		}
		if total, _, ret := d.memoryInfo(mig); ret == nvml.SUCCESS {
			m.MemoryTotal = total
		}
		if attrs, ret := mig.GetAttributes(); ret == nvml.SUCCESS {
			m.MultiprocessorCount = attrs.MultiprocessorCount
		}
		out = append(out, m)
	}
	return out, nil
}

func (d *nvmlDriver) DeviceStatus(_ context.Context, index int) (DeviceStatus, error) {
	dev, err := d.handle(index)
	if err != nil {
		return DeviceStatus{}, err
	}
	var st DeviceStatus
	if _, used, ret := d.memoryInfo(dev); ret == nvml.SUCCESS {
		st.MemoryUsed = &used
	}
	if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
		st.GPUUtilization, st.MemoryUtilization = &u.Gpu, &u.Memory
	}
	if t, ok := d.temperature(dev); ok {
		st.TemperatureCelsius = &t
	}
	if p, ret := dev.GetPowerUsage(); ret == nvml.SUCCESS {
		st.PowerUsageMilliwatts = &p
	}
	if p, ret := dev.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		st.PowerLimitMilliwatts = &p
	}
	return st, nil
}

// memoryInfo answers total and used memory as nvidia-smi shows them: v2,
// whose used excludes the memory the driver reserves (v1 counts it, 600+ MiB
// on an idle H200). Drivers without v2 get v1.
func (d *nvmlDriver) memoryInfo(dev nvml.Device) (total, used uint64, ret nvml.Return) {
	if d.memoryV2 {
		mem, ret := dev.GetMemoryInfo_v2()
		switch ret {
		case nvml.SUCCESS:
			return mem.Total, mem.Used, ret
		case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND, nvml.ERROR_ARGUMENT_VERSION_MISMATCH:
			// An old driver that knows the symbol but not version 2.
		default:
			return 0, 0, ret
		}
	}
	mem, ret := dev.GetMemoryInfo()
	return mem.Total, mem.Used, ret
}

// temperature reads the GPU die sensor through GetTemperatureV, falling
// back to the deprecated GetTemperature on drivers without it.
func (d *nvmlDriver) temperature(dev nvml.Device) (uint32, bool) {
	if d.temperatureV {
		t, ret := dev.GetTemperatureV().V1()
		if ret == nvml.SUCCESS && t.Temperature >= 0 {
			return uint32(t.Temperature), true
		}
		if ret != nvml.ERROR_NOT_SUPPORTED && ret != nvml.ERROR_FUNCTION_NOT_FOUND && ret != nvml.ERROR_ARGUMENT_VERSION_MISMATCH {
			return 0, false
		}
	}
	//nolint:staticcheck // the fallback for drivers older than GetTemperatureV
	t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU)
	return t, ret == nvml.SUCCESS
}

func (d *nvmlDriver) DeviceProcesses(_ context.Context, index int) ([]ProcessInfo, error) {
	dev, err := d.handle(index)
	if err != nil {
		return nil, err
	}
	procs, ret := dev.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return nil, nvmlError(fmt.Sprintf("device %d processes", index), ret)
	}
	out := make([]ProcessInfo, 0, len(procs))
	for _, p := range procs {
		out = append(out, ProcessInfo{PID: p.Pid, UsedMemory: p.UsedGpuMemory})
	}
	return out, nil
}

// eventSet registers XID and ECC events on every GPU once. GPUs that cannot
// report events (GeForce boards, some MIG setups) are skipped, as in
// NVIDIA's k8s device plugin.
func (d *nvmlDriver) eventSet() (nvml.EventSet, error) {
	if err := d.errNotReady("event set"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.events != nil || d.eventsErr != nil {
		return d.events, d.eventsErr
	}
	set, ret := d.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		d.eventsErr = nvmlError("create event set", ret)
		return nil, d.eventsErr
	}
	count, ret := d.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = set.Free()
		d.eventsErr = nvmlError("device count", ret)
		return nil, d.eventsErr
	}
	const wanted = uint64(nvml.EventTypeXidCriticalError | nvml.EventTypeDoubleBitEccError | nvml.EventTypeSingleBitEccError)
	registered := 0
	for i := range count {
		dev, ret := d.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		supported, ret := dev.GetSupportedEventTypes()
		if ret != nvml.SUCCESS || supported&wanted == 0 {
			continue
		}
		if dev.RegisterEvents(supported&wanted, set) == nvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 {
		_ = set.Free()
		d.eventsErr = fmt.Errorf("no GPU accepts XID/ECC event registration: %w", ErrNotSupported)
		return nil, d.eventsErr
	}
	d.events = set
	return set, nil
}

func (d *nvmlDriver) WaitEvent(ctx context.Context, timeout time.Duration) (Event, bool, error) {
	set, err := d.eventSet()
	if err != nil {
		return Event{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return Event{}, false, err
	}
	data, ret := set.Wait(uint32(min(timeout, time.Hour) / time.Millisecond))
	if ret == nvml.ERROR_TIMEOUT {
		return Event{}, false, nil
	}
	if ret != nvml.SUCCESS {
		return Event{}, false, nvmlError("wait for events", ret)
	}
	ev := Event{}
	switch data.EventType {
	case nvml.EventTypeXidCriticalError:
		ev.Kind, ev.Xid = EventXid, data.EventData
	case nvml.EventTypeDoubleBitEccError:
		ev.Kind = EventDoubleBitECC
	case nvml.EventTypeSingleBitEccError:
		ev.Kind = EventSingleBitECC
	default:
		return Event{}, false, nil
	}
	if data.Device != nil {
		if uuid, ret := data.Device.GetUUID(); ret == nvml.SUCCESS {
			ev.DeviceUUID = uuid
		}
	}
	return ev, true, nil
}
