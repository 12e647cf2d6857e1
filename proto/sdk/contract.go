// Package sdk is the Go side of the baiagent compute plugin API: the contract
// as plain Go types, Serve for plugin authors, and a client the agent uses.
//
// A plugin author implements Plugin and calls Serve from main. Everything about
// gRPC, go-plugin's handshake and streams stays inside this package.
package sdk

import (
	"context"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// APIVersion is the newest plugin API version this SDK speaks.
const APIVersion = "1.0"

// Plugin is the one interface a compute plugin implements. Calls may arrive
// concurrently once Configure has returned.
type Plugin interface {
	// Describe says who the plugin is and how its slots are allocated. It
	// must work before Configure.
	Describe(ctx context.Context) (Description, error)
	// Configure receives the plugin's configuration. Return a *ConfigError
	// naming each bad key.
	Configure(ctx context.Context, req ConfigureRequest) error
	// ListDevices returns every device the plugin sees now.
	ListDevices(ctx context.Context) ([]Device, error)
	// WatchDevices sends the full device list on every change until ctx ends,
	// then closes the channel. The first value is the current list.
	WatchDevices(ctx context.Context) (<-chan []Device, error)
	// PrepareContainer turns an allocation the agent made into container
	// settings. It must not keep allocation state.
	PrepareContainer(ctx context.Context, req PrepareRequest) (ContainerSpec, error)
	// RestoreAllocation reads back what a running container was given.
	RestoreAllocation(ctx context.Context, req RestoreRequest) (Allocation, error)
	// NodeMetrics measures the node and each device.
	NodeMetrics(ctx context.Context) ([]Metric, error)
	// ContainerMetrics measures the given containers.
	ContainerMetrics(ctx context.Context, containers []ContainerRef) ([]Metric, error)
	// HardwareInfo reports hardware health.
	HardwareInfo(ctx context.Context) (HardwareInfo, error)
}

// SlotKind is how a slot's amount is counted.
type SlotKind int

const (
	SlotKindUnspecified SlotKind = iota
	SlotCount
	SlotBytes
	// SlotUnique slots must be requested with exactly 1 (a MIG profile).
	SlotUnique
	// SlotUnified slots are attached to every kernel with an empty allocation.
	SlotUnified
)

func (k SlotKind) String() string {
	switch k {
	case SlotCount:
		return "count"
	case SlotBytes:
		return "bytes"
	case SlotUnique:
		return "unique"
	case SlotUnified:
		return "unified"
	default:
		return "unspecified"
	}
}

// SlotType describes one resource slot and how the manager displays it.
type SlotType struct {
	Name              string
	Kind              SlotKind
	HumanReadableName string
	Description       string
	DisplayUnit       string
	NumberFormat      NumberFormat
	DisplayIcon       string
}

// NumberFormat is upstream's display number format.
type NumberFormat struct {
	Binary      bool
	RoundLength int
}

// AllocKind says whether a device is given out whole or in fractions.
type AllocKind int

const (
	AllocKindUnspecified AllocKind = iota
	AllocDiscrete
	AllocFractional
)

func (k AllocKind) String() string {
	switch k {
	case AllocDiscrete:
		return "discrete"
	case AllocFractional:
		return "fractional"
	default:
		return "unspecified"
	}
}

// AllocStrategy is upstream's FILL or EVENLY.
type AllocStrategy int

const (
	StrategyUnspecified AllocStrategy = iota
	StrategyFill
	StrategyEvenly
)

func (s AllocStrategy) String() string {
	switch s {
	case StrategyFill:
		return "fill"
	case StrategyEvenly:
		return "evenly"
	default:
		return "unspecified"
	}
}

// AllocMapSpec tells the agent how to allocate this plugin's devices.
type AllocMapSpec struct {
	Kind     AllocKind
	Strategy AllocStrategy
	// Quantum is the fractional step; zero for discrete maps.
	Quantum decimal.Decimal
	// MinMemory: EVENLY skips devices with less free than this.
	MinMemory          decimal.Decimal
	AllowFragmentation bool
}

// Description is what Describe returns.
type Description struct {
	// Name identifies the plugin ("cpu", "cuda", a vendor's name).
	Name        string
	Version     string
	APIVersions []string
	// Kinds are the device kinds the plugin owns; most plugins own one.
	Kinds []ResourceKind
	// UpstreamEntrypoints are the Python entry-point module paths this plugin
	// stands in for, so allow-compute-plugins lists of the Python agent work.
	UpstreamEntrypoints []string
	ExtraInfo           map[string]string
}

// ResourceKind is one device kind: upstream's compute plugin key with its
// slots and alloc map.
type ResourceKind struct {
	// Key prefixes every slot name ("cuda" owns "cuda.device"). The intrinsic
	// kinds "cpu" and "mem" own exactly the slot of their own name.
	Key       string
	SlotTypes []SlotType
	// ExclusiveSlotPatterns are shell patterns; two different slots matching
	// them may not be requested together.
	ExclusiveSlotPatterns []string
	AllocMap              AllocMapSpec
}

// Keys returns the keys of every kind the plugin owns.
func (d Description) Keys() []string {
	keys := make([]string, 0, len(d.Kinds))
	for _, k := range d.Kinds {
		keys = append(keys, k.Key)
	}
	return keys
}

// Validate checks the invariants the agent relies on: a name, at least one
// kind, unique keys, slot names prefixed by their kind's key (except the
// intrinsic cpu and mem), and a usable alloc map per kind.
func (d Description) Validate() error {
	if d.Name == "" {
		return fmt.Errorf("plugin description has an empty name")
	}
	if len(d.Kinds) == 0 {
		return fmt.Errorf("plugin %q describes no resource kinds", d.Name)
	}
	seen := map[string]bool{}
	for _, k := range d.Kinds {
		if err := k.validate(); err != nil {
			return fmt.Errorf("plugin %q: %w", d.Name, err)
		}
		if seen[k.Key] {
			return fmt.Errorf("plugin %q: kind %q is described twice", d.Name, k.Key)
		}
		seen[k.Key] = true
	}
	return nil
}

func (k ResourceKind) validate() error {
	if k.Key == "" || strings.ContainsAny(k.Key, ".:/ ") {
		return fmt.Errorf("invalid kind key %q", k.Key)
	}
	if len(k.SlotTypes) == 0 {
		return fmt.Errorf("kind %q has no slot types", k.Key)
	}
	for _, st := range k.SlotTypes {
		if !SlotBelongsTo(k.Key, st.Name) {
			if isIntrinsic(k.Key) {
				return fmt.Errorf("kind %q: slot %q must be named %q", k.Key, st.Name, k.Key)
			}
			return fmt.Errorf("kind %q: slot %q is not prefixed with %q", k.Key, st.Name, k.Key+".")
		}
		if st.Kind == SlotKindUnspecified {
			return fmt.Errorf("kind %q: slot %q has no slot kind", k.Key, st.Name)
		}
	}
	switch k.AllocMap.Kind {
	case AllocDiscrete:
	case AllocFractional:
		if !k.AllocMap.Quantum.IsPositive() {
			return fmt.Errorf("kind %q: fractional alloc map needs a positive quantum, got %s", k.Key, k.AllocMap.Quantum)
		}
	default:
		return fmt.Errorf("kind %q: alloc map kind is unspecified", k.Key)
	}
	if k.AllocMap.Strategy == StrategyUnspecified {
		return fmt.Errorf("kind %q: alloc map strategy is unspecified", k.Key)
	}
	return nil
}

// isIntrinsic reports the kinds whose slot names carry no prefix.
func isIntrinsic(key string) bool { return key == "cpu" || key == "mem" }

// SlotBelongsTo reports whether slot is named under the kind key: "cuda" owns
// "cuda.device" and "cuda.device:1g.5gb-mig"; the intrinsic "cpu" and "mem"
// own exactly their own name.
func SlotBelongsTo(key, slot string) bool {
	if isIntrinsic(key) {
		return slot == key
	}
	return strings.HasPrefix(slot, key+".") && len(slot) > len(key)+1
}

// KindOfSlot returns the device kind a slot name belongs to: the part before
// the first ".", as upstream reads resource.txt.
func KindOfSlot(slot string) string {
	if i := strings.IndexByte(slot, '.'); i >= 0 {
		return slot[:i]
	}
	return slot
}

// AgentInfo tells a plugin about the node it runs on.
type AgentInfo struct {
	AgentID        string
	DockerVersion  string
	DockerRuntimes []string
}

// ConfigureRequest carries the plugin's configuration.
type ConfigureRequest struct {
	// APIVersion is the version the agent chose from Description.APIVersions.
	APIVersion string
	// Config is the plugin's table from agent.toml / etcd, decoded from JSON.
	Config map[string]any
	Agent  AgentInfo
}

// ConfigProblem names a configuration key and what is wrong with it.
type ConfigProblem struct {
	Key    string
	Reason string
}

// ConfigError is returned by Configure for bad configuration.
type ConfigError struct {
	Problems []ConfigProblem
}

func (e *ConfigError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		parts = append(parts, p.Key+": "+p.Reason)
	}
	return "invalid plugin configuration: " + strings.Join(parts, "; ")
}

// Health of a device or of the plugin's hardware as a whole.
type Health int

const (
	HealthUnknown Health = iota
	HealthHealthy
	HealthDegraded
	HealthUnhealthy
)

// MarshalText writes the health as its name.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads a health name.
func (h *Health) UnmarshalText(b []byte) error {
	switch string(b) {
	case "healthy":
		*h = HealthHealthy
	case "degraded":
		*h = HealthDegraded
	case "unhealthy":
		*h = HealthUnhealthy
	case "unknown", "":
		*h = HealthUnknown
	default:
		return fmt.Errorf("unknown health %q", b)
	}
	return nil
}

func (h Health) String() string {
	switch h {
	case HealthHealthy:
		return "healthy"
	case HealthDegraded:
		return "degraded"
	case HealthUnhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}

// UnknownNUMANode marks a device whose NUMA node is not known.
const UnknownNUMANode = -1

// Device is one allocatable device. Each device carries exactly one slot.
type Device struct {
	ID                string            `json:"id"`
	Model             string            `json:"model,omitempty"`
	UUID              string            `json:"uuid,omitempty"`
	PCIBusID          string            `json:"pci_bus_id,omitempty"`
	NUMANode          int               `json:"numa_node"`
	MemoryBytes       uint64            `json:"memory_bytes,omitempty"`
	ProcessingUnits   uint32            `json:"processing_units,omitempty"`
	Health            Health            `json:"health"`
	HealthDescription string            `json:"health_description,omitempty"`
	Attributes        map[string]string `json:"attributes,omitempty"`
	SlotName          string            `json:"slot_name"`
	Capacity          decimal.Decimal   `json:"capacity"`
}

// Allocation is what a container was given: slot -> device ID -> amount.
type Allocation map[string]map[string]decimal.Decimal

// PrepareRequest asks a plugin for the container settings of an allocation.
type PrepareRequest struct {
	Allocation Allocation
	// ConfigDir is a host directory private to this plugin and kernel.
	ConfigDir   string
	KernelID    string
	ImageDistro string
	ImageArch   string
}

// ContainerSpec is the part of a container's settings one plugin provides.
// The agent merges the specs of all plugins.
type ContainerSpec struct {
	Env             map[string]string
	Devices         []DeviceNode
	Mounts          []Mount
	DeviceRequests  []DeviceRequest
	CDIDevices      []string
	GroupAdd        []string
	ResourceData    map[string]string
	AttachedDevices []AttachedDevice
	CpusetCpus      string
	MemoryBytes     int64
	MemorySwapBytes int64
	Runtime         string
	Hooks           []string
	DockerNetworks  []string
	AllowedSyscalls []string
}

// DeviceNode is a device file passed into the container.
type DeviceNode struct {
	HostPath          string
	ContainerPath     string
	CgroupPermissions string
}

// Mount is a bind mount.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// DeviceRequest is a Docker DeviceRequest (e.g. the nvidia driver or CDI).
type DeviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

// AttachedDevice is reported to the manager as a kernel's attached device.
type AttachedDevice struct {
	DeviceID  string
	ModelName string
	Data      map[string]string
}

// RestoreRequest carries what a running container records about itself.
type RestoreRequest struct {
	// ResourceData holds the KEY=VALUE lines of the kernel's resource.txt.
	ResourceData map[string]string
	Labels       map[string]string
	CpusetCpus   string
	MemoryBytes  int64
}

// MetricType is upstream's MetricTypes.
type MetricType int

const (
	MetricTypeUnspecified MetricType = iota
	MetricGauge
	MetricAccumulation
	MetricUtilization
)

// Measurement is one value with an optional capacity.
type Measurement struct {
	Value    decimal.Decimal
	Capacity *decimal.Decimal
}

// Metric is one measured quantity across the node, devices or containers.
type Metric struct {
	Key          string
	Type         MetricType
	UnitHint     string
	PerNode      *Measurement
	PerDevice    map[string]Measurement
	PerContainer map[string]Measurement
}

// ContainerRef locates a container's cgroup.
type ContainerRef struct {
	ContainerID string
	// CgroupPath is relative to the cgroup root (v2) or to each controller (v1).
	CgroupPath string
	PID        int
}

// HardwareInfo is the plugin's answer to gather_hwinfo.
type HardwareInfo struct {
	Status     Health
	StatusInfo string
	Metadata   map[string]string
}
