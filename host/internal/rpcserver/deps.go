package rpcserver

import (
	"context"

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
