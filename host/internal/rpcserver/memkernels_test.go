package rpcserver

import (
	"context"
	"sync"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// MemoryKernels is an in-memory KernelRegistry for the tests of the
// container-free methods; it lives in a test file so that no agent can
// answer the manager from it.
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
