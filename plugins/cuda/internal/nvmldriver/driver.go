// Package nvmldriver is the seam between the cuda plugin and NVML. Driver is
// a thin, index-based wrapper over the NVML calls the plugin needs; the real
// implementation goes through github.com/NVIDIA/go-nvml (cgo, dlopen of
// libnvidia-ml.so.1) and the fake one reads a TOML device description, so
// everything above this package runs without a GPU. Client aggregates the
// driver's answers into the GPUs the plugin hands out.
package nvmldriver

import (
	"context"
	"errors"
	"time"
)

// ErrLibraryNotFound means libnvidia-ml could not be loaded: the node has no
// NVIDIA driver, or the plugin was built without cgo.
var ErrLibraryNotFound = errors.New("NVIDIA driver library libnvidia-ml.so.1 not found")

// ErrNotSupported means the device or driver does not offer a query.
var ErrNotSupported = errors.New("not supported by this device or driver")

// DeviceInfo is what does not change while a GPU is plugged in.
type DeviceInfo struct {
	Index int
	UUID  string
	Name  string
	// MemoryTotal is in bytes.
	MemoryTotal uint64
	// MultiprocessorCount is 0 when NVML cannot tell.
	MultiprocessorCount uint32
	// ComputeCapability is "major.minor", empty when unknown.
	ComputeCapability string
	// PCIBusID is NVML's form, "00000000:07:00.0".
	PCIBusID   string
	MigEnabled bool
}

// MigDeviceInfo is one MIG instance of a GPU with MIG mode on.
type MigDeviceInfo struct {
	UUID string
	// Profile is the GPU instance profile, "1g.10gb".
	Profile             string
	MemoryTotal         uint64
	MultiprocessorCount uint32
}

// DeviceStatus is one sample of a GPU's gauges. A nil field is a value the
// device does not report ("N/A" in nvidia-smi).
type DeviceStatus struct {
	MemoryUsed           *uint64
	GPUUtilization       *uint32
	MemoryUtilization    *uint32
	TemperatureCelsius   *uint32
	PowerUsageMilliwatts *uint32
	PowerLimitMilliwatts *uint32
}

// ProcessInfo is one compute process running on a GPU (host PID namespace).
type ProcessInfo struct {
	PID        uint32
	UsedMemory uint64
}

// EventKind is the kind of a device event.
type EventKind int

const (
	EventXid EventKind = iota + 1
	EventDoubleBitECC
	EventSingleBitECC
)

func (k EventKind) String() string {
	switch k {
	case EventXid:
		return "xid"
	case EventDoubleBitECC:
		return "double-bit-ecc"
	case EventSingleBitECC:
		return "single-bit-ecc"
	default:
		return "unknown"
	}
}

// Event is a device error reported by the driver.
type Event struct {
	// DeviceUUID is the physical GPU's UUID; empty when the driver could not
	// tell which device failed.
	DeviceUUID string
	Kind       EventKind
	// Xid is the XID code for EventXid.
	Xid uint64
}

// Driver is the thin NVML layer. Devices are addressed by NVML index.
// Implementations must be safe for concurrent use after Init.
type Driver interface {
	// Init loads the library; ErrLibraryNotFound when there is none.
	Init(ctx context.Context) error
	Shutdown(ctx context.Context) error
	DriverVersion(ctx context.Context) (string, error)
	DeviceCount(ctx context.Context) (int, error)
	DeviceInfo(ctx context.Context, index int) (DeviceInfo, error)
	// MigDevices lists the MIG instances of a GPU with MIG mode on.
	MigDevices(ctx context.Context, index int) ([]MigDeviceInfo, error)
	DeviceStatus(ctx context.Context, index int) (DeviceStatus, error)
	DeviceProcesses(ctx context.Context, index int) ([]ProcessInfo, error)
	// WaitEvent waits up to timeout for an XID or ECC event. ok is false when
	// none came. ErrNotSupported when the driver cannot deliver events.
	WaitEvent(ctx context.Context, timeout time.Duration) (ev Event, ok bool, err error)
}
