//go:build !(linux && cgo)

package nvmldriver

import (
	"context"
	"fmt"
	"time"
)

// DefaultLibraryPath is the NVML library a cgo build loads.
const DefaultLibraryPath = "libnvidia-ml.so.1"

// CgoEnabled reports whether this build can talk to a real NVML. go-nvml
// needs cgo (it dlopens through libdl), so this build cannot.
const CgoEnabled = false

// unavailableDriver is the real driver of a build without cgo: there is
// no way to load NVML, so it reports the library as missing.
type unavailableDriver struct{}

// NewNVML returns a driver whose Init fails with ErrLibraryNotFound,
// saying why.
func NewNVML(string) Driver { return unavailableDriver{} }

func (unavailableDriver) errNoCgo() error {
	return fmt.Errorf("plugin built without cgo, NVML cannot be loaded: %w", ErrLibraryNotFound)
}

func (u unavailableDriver) Init(context.Context) error     { return u.errNoCgo() }
func (u unavailableDriver) Shutdown(context.Context) error { return nil }
func (u unavailableDriver) DriverVersion(context.Context) (string, error) {
	return "", u.errNoCgo()
}
func (u unavailableDriver) DeviceCount(context.Context) (int, error) { return 0, u.errNoCgo() }
func (u unavailableDriver) DeviceInfo(context.Context, int) (DeviceInfo, error) {
	return DeviceInfo{}, u.errNoCgo()
}
func (u unavailableDriver) MigDevices(context.Context, int) ([]MigDeviceInfo, error) {
	return nil, u.errNoCgo()
}
func (u unavailableDriver) DeviceStatus(context.Context, int) (DeviceStatus, error) {
	return DeviceStatus{}, u.errNoCgo()
}
func (u unavailableDriver) DeviceProcesses(context.Context, int) ([]ProcessInfo, error) {
	return nil, u.errNoCgo()
}
func (u unavailableDriver) WaitEvent(context.Context, time.Duration) (Event, bool, error) {
	return Event{}, false, u.errNoCgo()
}
