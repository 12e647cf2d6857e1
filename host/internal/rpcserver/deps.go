package rpcserver

import (
	"context"
	"sync"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// KernelRegistry is what the container-free handlers ask about kernels.
// *session.Service implements it; kernel ids come in the dashed form when
// they are UUIDs.
type KernelRegistry interface {
	IsPulling(ctx context.Context, imageCanonical string) (bool, error)
	IsCreating(ctx context.Context, kernelID string) (bool, error)
	IsRunning(ctx context.Context, kernelID string) (bool, error)
	// SyncWithManager reconciles with the manager's list of live kernels.
	SyncWithManager(ctx context.Context, live []sessionapi.KernelSession) error
	// GPUAllocMap is scan_gpu_alloc_map's answer.
	GPUAllocMap(ctx context.Context) (map[string]string, error)
}

// DeviceHealth is one plugin's hardware health, as gather_hwinfo reports it.
type DeviceHealth struct {
	DeviceKey  string
	Status     string // healthy, degraded, offline or unavailable
	StatusInfo string
	Metadata   map[string]string
}

// HardwareSource reports the plugins' hardware health.
type HardwareSource interface {
	HardwareHealth(ctx context.Context) ([]DeviceHealth, error)
}

// MemoryKernels is an in-memory KernelRegistry.
type MemoryKernels struct {
	mu       sync.Mutex
	pulling  map[string]bool
	creating map[string]bool
	running  map[string]string // kernel id -> session id
	gpuAlloc map[string]string
}

// NewMemoryKernels returns an empty registry.
func NewMemoryKernels() *MemoryKernels {
	return &MemoryKernels{pulling: map[string]bool{}, creating: map[string]bool{}, running: map[string]string{}, gpuAlloc: map[string]string{}}
}

// SetPulling marks an image as being pulled or not.
func (m *MemoryKernels) SetPulling(image string, pulling bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	setOrDelete(m.pulling, image, pulling)
}

// SetCreating marks a kernel as being created or not.
func (m *MemoryKernels) SetCreating(kernelID string, creating bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	setOrDelete(m.creating, kernelID, creating)
}

// SetRunning records a running kernel; an empty sessionID removes it.
func (m *MemoryKernels) SetRunning(kernelID, sessionID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sessionID == "" {
		delete(m.running, kernelID)
		return
	}
	m.running[kernelID] = sessionID
}

// SetGPUAlloc records a kernel's GPU allocation text.
func (m *MemoryKernels) SetGPUAlloc(kernelID, alloc string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gpuAlloc[kernelID] = alloc
}

func setOrDelete(m map[string]bool, key string, on bool) {
	if on {
		m[key] = true
	} else {
		delete(m, key)
	}
}

// IsPulling implements KernelRegistry.
func (m *MemoryKernels) IsPulling(_ context.Context, image string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pulling[image], nil
}

// IsCreating implements KernelRegistry.
func (m *MemoryKernels) IsCreating(_ context.Context, kernelID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creating[kernelID], nil
}

// IsRunning implements KernelRegistry.
func (m *MemoryKernels) IsRunning(_ context.Context, kernelID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.running[kernelID]
	return ok, nil
}

// SyncWithManager forgets local kernels the manager no longer knows; with no
// containers behind them there is nothing else to destroy.
func (m *MemoryKernels) SyncWithManager(_ context.Context, live []sessionapi.KernelSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	known := make(map[string]bool, len(live))
	for _, k := range live {
		known[k.KernelID] = true
	}
	for id := range m.running {
		if !known[id] {
			delete(m.running, id)
		}
	}
	return nil
}

// GPUAllocMap implements KernelRegistry.
func (m *MemoryKernels) GPUAllocMap(context.Context) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.gpuAlloc))
	for k, v := range m.gpuAlloc {
		out[k] = v
	}
	return out, nil
}
