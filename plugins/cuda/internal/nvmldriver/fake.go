package nvmldriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/baiagent/baiagent/proto/sdk"
)

// Limits that keep a damaged or hostile fake file cheap to reject.
const (
	maxFakeFileBytes   = 1 << 20
	maxFakeGPUs        = 64
	maxFakeMigPerGPU   = 8
	maxFakeProcsPerGPU = 256
)

// ByteSize is a size in bytes written in TOML as upstream's BinarySize
// string: "80GiB", "80g", "4294967296".
type ByteSize uint64

// UnmarshalText reads a binary size.
func (s *ByteSize) UnmarshalText(b []byte) error {
	d, err := sdk.ParseBinarySize(string(b))
	if err != nil {
		return err
	}
	if d.IsNegative() || d.BigInt().BitLen() > 64 {
		return fmt.Errorf("binary size %q does not fit in 64 bits", b)
	}
	*s = ByteSize(d.BigInt().Uint64())
	return nil
}

// MarshalText writes the plain byte count, which UnmarshalText reads back.
func (s ByteSize) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%d", uint64(s)), nil
}

// FakeSpec is the TOML description of a fake node's GPUs.
type FakeSpec struct {
	DriverVersion string `toml:"driver_version"`
	// EventWait says how WaitEvent behaves: FakeWaitCancellable (default),
	// FakeWaitNVML or FakeWaitHang.
	EventWait string    `toml:"event_wait,omitempty"`
	GPUs      []FakeGPU `toml:"gpu"`
}

// How the fake's WaitEvent behaves, for shutdown tests.
const (
	// FakeWaitCancellable returns when ctx ends.
	FakeWaitCancellable = "cancellable"
	// FakeWaitNVML blocks for its whole timeout whatever ctx does, as
	// nvmlEventSetWait does in C.
	FakeWaitNVML = "nvml"
	// FakeWaitHang never returns unless an event comes: a driver stuck in
	// the kernel.
	FakeWaitHang = "hang"
)

// FakeGPU is one physical GPU of a FakeSpec. Its NVML index is its
// position in the file.
type FakeGPU struct {
	UUID              string   `toml:"uuid"`
	Name              string   `toml:"name"`
	Memory            ByteSize `toml:"memory"`
	MemoryUsed        ByteSize `toml:"memory_used,omitempty"`
	Multiprocessors   uint32   `toml:"multiprocessors"`
	ComputeCapability string   `toml:"compute_capability"`
	PCIBusID          string   `toml:"pci_bus_id"`
	// Gauges; absent means the device does not report them (N/A).
	Utilization       *uint32 `toml:"utilization,omitempty"`
	MemoryUtilization *uint32 `toml:"memory_utilization,omitempty"`
	Temperature       *uint32 `toml:"temperature,omitempty"`
	PowerUsageMW      *uint32 `toml:"power_usage_mw,omitempty"`
	PowerLimitMW      *uint32 `toml:"power_limit_mw,omitempty"`

	MigEnabled bool              `toml:"mig_enabled,omitempty"`
	Mig        []FakeMigInstance `toml:"mig,omitempty"`
	Processes  []FakeProcess     `toml:"processes,omitempty"`
}

// FakeMigInstance is one MIG instance of a FakeGPU.
type FakeMigInstance struct {
	UUID            string   `toml:"uuid"`
	Profile         string   `toml:"profile"`
	Memory          ByteSize `toml:"memory"`
	Multiprocessors uint32   `toml:"multiprocessors"`
}

// FakeProcess is a compute process on a FakeGPU.
type FakeProcess struct {
	PID        uint32   `toml:"pid"`
	UsedMemory ByteSize `toml:"used_memory"`
}

var (
	computeCapabilityPattern = regexp.MustCompile(`^[0-9]{1,2}\.[0-9]{1,2}$`)
	pciBusIDPattern          = regexp.MustCompile(`^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$`)
	migProfilePattern        = regexp.MustCompile(`^[0-9]+g\.[0-9]+gb(\+[a-z0-9]+)*$`)
)

// LoadFakeSpec reads and validates a fake description file.
func LoadFakeSpec(path string) (FakeSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return FakeSpec{}, fmt.Errorf("open fake NVML description: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFakeFileBytes+1))
	if err != nil {
		return FakeSpec{}, fmt.Errorf("read fake NVML description %s: %w", path, err)
	}
	if len(data) > maxFakeFileBytes {
		return FakeSpec{}, fmt.Errorf("fake NVML description %s is larger than %d bytes", path, maxFakeFileBytes)
	}
	spec, err := ParseFakeSpec(data)
	if err != nil {
		return FakeSpec{}, fmt.Errorf("fake NVML description %s: %w", path, err)
	}
	return spec, nil
}

// ParseFakeSpec decodes a fake description; unknown keys are errors so a
// typo does not silently drop a device property.
func ParseFakeSpec(data []byte) (FakeSpec, error) {
	var spec FakeSpec
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return FakeSpec{}, fmt.Errorf("unknown keys: %s", strict.String())
		}
		return FakeSpec{}, fmt.Errorf("decode TOML: %w", err)
	}
	if err := spec.Validate(); err != nil {
		return FakeSpec{}, err
	}
	return spec, nil
}

// Validate checks what real NVML guarantees: unique UUIDs and bus IDs,
// memory on every device, sane gauges, MIG instances only with MIG on.
func (s FakeSpec) Validate() error {
	switch s.EventWait {
	case "", FakeWaitCancellable, FakeWaitNVML, FakeWaitHang:
	default:
		return fmt.Errorf("event_wait %q is not one of %s, %s, %s", s.EventWait, FakeWaitCancellable, FakeWaitNVML, FakeWaitHang)
	}
	if len(s.GPUs) > maxFakeGPUs {
		return fmt.Errorf("%d GPUs, at most %d", len(s.GPUs), maxFakeGPUs)
	}
	uuids := map[string]bool{}
	busIDs := map[string]bool{}
	claimUUID := func(where, uuid string) error {
		if strings.TrimSpace(uuid) == "" || strings.ContainsAny(uuid, ":, \t\r\n=") {
			return fmt.Errorf("%s: uuid %q is empty or contains ':', ',', '=' or spaces", where, uuid)
		}
		if uuids[uuid] {
			return fmt.Errorf("%s: uuid %q is used twice", where, uuid)
		}
		uuids[uuid] = true
		return nil
	}
	for i, g := range s.GPUs {
		where := fmt.Sprintf("gpu %d", i)
		if err := claimUUID(where, g.UUID); err != nil {
			return err
		}
		if strings.TrimSpace(g.Name) == "" {
			return fmt.Errorf("%s: name is empty", where)
		}
		if g.Memory == 0 {
			return fmt.Errorf("%s: memory must be positive", where)
		}
		if g.MemoryUsed > g.Memory {
			return fmt.Errorf("%s: memory_used %d exceeds memory %d", where, g.MemoryUsed, g.Memory)
		}
		if g.ComputeCapability != "" && !computeCapabilityPattern.MatchString(g.ComputeCapability) {
			return fmt.Errorf("%s: compute_capability %q is not major.minor", where, g.ComputeCapability)
		}
		if !pciBusIDPattern.MatchString(g.PCIBusID) {
			return fmt.Errorf("%s: pci_bus_id %q is not domain:bus:device.function", where, g.PCIBusID)
		}
		normalized := NormalizeBusID(g.PCIBusID)
		if busIDs[normalized] {
			return fmt.Errorf("%s: pci_bus_id %q is used twice", where, g.PCIBusID)
		}
		busIDs[normalized] = true
		for name, pct := range map[string]*uint32{"utilization": g.Utilization, "memory_utilization": g.MemoryUtilization} {
			if pct != nil && *pct > 100 {
				return fmt.Errorf("%s: %s %d exceeds 100", where, name, *pct)
			}
		}
		if len(g.Mig) > 0 && !g.MigEnabled {
			return fmt.Errorf("%s: has MIG instances but mig_enabled is false", where)
		}
		if len(g.Mig) > maxFakeMigPerGPU {
			return fmt.Errorf("%s: %d MIG instances, at most %d", where, len(g.Mig), maxFakeMigPerGPU)
		}
		for j, m := range g.Mig {
			migWhere := fmt.Sprintf("%s mig %d", where, j)
			if err := claimUUID(migWhere, m.UUID); err != nil {
				return err
			}
			if !migProfilePattern.MatchString(m.Profile) {
				return fmt.Errorf("%s: profile %q is not like 1g.10gb", migWhere, m.Profile)
			}
			if m.Memory == 0 || m.Memory > g.Memory {
				return fmt.Errorf("%s: memory must be positive and at most the GPU's", migWhere)
			}
		}
		if len(g.Processes) > maxFakeProcsPerGPU {
			return fmt.Errorf("%s: %d processes, at most %d", where, len(g.Processes), maxFakeProcsPerGPU)
		}
		for j, p := range g.Processes {
			if p.PID == 0 {
				return fmt.Errorf("%s process %d: pid must be positive", where, j)
			}
		}
	}
	return nil
}

// NormalizeBusID turns NVML's "00000000:07:00.0" into sysfs' lower-case
// "0000:07:00.0": the domain keeps four digits unless it needs more.
func NormalizeBusID(busID string) string {
	busID = strings.ToLower(strings.TrimSpace(busID))
	domain, rest, ok := strings.Cut(busID, ":")
	if !ok {
		return busID
	}
	domain = strings.TrimLeft(domain, "0")
	if len(domain) < 4 {
		domain = strings.Repeat("0", 4-len(domain)) + domain
	}
	return domain + ":" + rest
}

// Fake is a Driver over a FakeSpec. Tests inject events with InjectEvent.
type Fake struct {
	events chan Event

	mu          sync.Mutex
	spec        FakeSpec
	initialized bool
}

// NewFake returns a driver for spec.
func NewFake(spec FakeSpec) *Fake {
	return &Fake{spec: spec, events: make(chan Event, 64)}
}

// InjectEvent queues an event for WaitEvent. It blocks if 64 are queued.
func (f *Fake) InjectEvent(ev Event) { f.events <- ev }

// SetSpec replaces the devices, as a hot-plug or MIG reconfiguration would.
func (f *Fake) SetSpec(spec FakeSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spec = spec
}

func (f *Fake) gpu(index int) (FakeGPU, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.initialized {
		return FakeGPU{}, errors.New("fake NVML: not initialized")
	}
	if index < 0 || index >= len(f.spec.GPUs) {
		return FakeGPU{}, fmt.Errorf("fake NVML: no device %d", index)
	}
	return f.spec.GPUs[index], nil
}

func (f *Fake) Init(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initialized = true
	return nil
}

func (f *Fake) Shutdown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initialized = false
	return nil
}

func (f *Fake) DriverVersion(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.spec.DriverVersion, nil
}

func (f *Fake) DeviceCount(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.initialized {
		return 0, errors.New("fake NVML: not initialized")
	}
	return len(f.spec.GPUs), nil
}

func (f *Fake) DeviceInfo(_ context.Context, index int) (DeviceInfo, error) {
	g, err := f.gpu(index)
	if err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{
		Index:               index,
		UUID:                g.UUID,
		Name:                g.Name,
		MemoryTotal:         uint64(g.Memory),
		MultiprocessorCount: g.Multiprocessors,
		ComputeCapability:   g.ComputeCapability,
		PCIBusID:            g.PCIBusID,
		MigEnabled:          g.MigEnabled,
	}, nil
}

func (f *Fake) MigDevices(_ context.Context, index int) ([]MigDeviceInfo, error) {
	g, err := f.gpu(index)
	if err != nil {
		return nil, err
	}
	if !g.MigEnabled {
		return nil, fmt.Errorf("fake NVML: device %d: MIG mode is off: %w", index, ErrNotSupported)
	}
	out := make([]MigDeviceInfo, 0, len(g.Mig))
	for _, m := range g.Mig {
		out = append(out, MigDeviceInfo{
			UUID: m.UUID, Profile: m.Profile,
			MemoryTotal: uint64(m.Memory), MultiprocessorCount: m.Multiprocessors,
		})
	}
	return out, nil
}

func (f *Fake) DeviceStatus(_ context.Context, index int) (DeviceStatus, error) {
	g, err := f.gpu(index)
	if err != nil {
		return DeviceStatus{}, err
	}
	used := uint64(g.MemoryUsed)
	return DeviceStatus{
		MemoryUsed:           &used,
		GPUUtilization:       g.Utilization,
		MemoryUtilization:    g.MemoryUtilization,
		TemperatureCelsius:   g.Temperature,
		PowerUsageMilliwatts: g.PowerUsageMW,
		PowerLimitMilliwatts: g.PowerLimitMW,
	}, nil
}

func (f *Fake) DeviceProcesses(_ context.Context, index int) ([]ProcessInfo, error) {
	g, err := f.gpu(index)
	if err != nil {
		return nil, err
	}
	out := make([]ProcessInfo, 0, len(g.Processes))
	for _, p := range g.Processes {
		out = append(out, ProcessInfo{PID: p.PID, UsedMemory: uint64(p.UsedMemory)})
	}
	return out, nil
}

func (f *Fake) WaitEvent(ctx context.Context, timeout time.Duration) (Event, bool, error) {
	f.mu.Lock()
	mode := f.spec.EventWait
	f.mu.Unlock()
	switch mode {
	case FakeWaitHang:
		return <-f.events, true, nil
	case FakeWaitNVML:
		ctx = context.Background() // the C call cannot see it
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case ev := <-f.events:
		return ev, true, nil
	case <-timer.C:
		return Event{}, false, nil
	case <-ctx.Done():
		return Event{}, false, ctx.Err()
	}
}
