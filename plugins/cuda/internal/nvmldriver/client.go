package nvmldriver

import (
	"context"
	"errors"
	"fmt"
)

// GPU is one device the plugin can hand out: a whole GPU, or a MIG
// instance of a GPU whose MIG mode is on (the parent itself is not
// allocatable then, as in upstream's mock and nomad-device-nvidia).
type GPU struct {
	// Index is the NVML index of the physical GPU (the parent for MIG).
	Index               int
	UUID                string
	Name                string
	MemoryTotal         uint64
	MultiprocessorCount uint32
	ComputeCapability   string
	// PCIBusID is the physical GPU's, NVML form.
	PCIBusID string
	// Mig is set for MIG instances.
	Mig *MigOf
}

// MigOf ties a MIG instance to its GPU.
type MigOf struct {
	Profile    string
	ParentUUID string
}

// IsMig reports whether g is a MIG instance.
func (g GPU) IsMig() bool { return g.Mig != nil }

// Client aggregates the thin Driver into GPUs.
type Client struct {
	driver Driver
}

// NewClient wraps a driver that Init has already succeeded on.
func NewClient(driver Driver) *Client { return &Client{driver: driver} }

// Driver returns the wrapped driver.
func (c *Client) Driver() Driver { return c.driver }

// GPUs lists every allocatable device in NVML index order, MIG instances in
// place of their parent.
func (c *Client) GPUs(ctx context.Context) ([]GPU, error) {
	count, err := c.driver.DeviceCount(ctx)
	if err != nil {
		return nil, fmt.Errorf("list GPUs: %w", err)
	}
	gpus := make([]GPU, 0, count)
	for index := range count {
		info, err := c.driver.DeviceInfo(ctx, index)
		if err != nil {
			return nil, fmt.Errorf("list GPUs: %w", err)
		}
		whole := GPU{
			Index:               index,
			UUID:                info.UUID,
			Name:                info.Name,
			MemoryTotal:         info.MemoryTotal,
			MultiprocessorCount: info.MultiprocessorCount,
			ComputeCapability:   info.ComputeCapability,
			PCIBusID:            info.PCIBusID,
		}
		if !info.MigEnabled {
			gpus = append(gpus, whole)
			continue
		}
		migs, err := c.driver.MigDevices(ctx, index)
		if err != nil && !errors.Is(err, ErrNotSupported) {
			return nil, fmt.Errorf("list MIG instances of GPU %d: %w", index, err)
		}
		for _, m := range migs {
			gpus = append(gpus, GPU{
				Index:               index,
				UUID:                m.UUID,
				Name:                fmt.Sprintf("%s MIG %s", info.Name, m.Profile),
				MemoryTotal:         m.MemoryTotal,
				MultiprocessorCount: m.MultiprocessorCount,
				ComputeCapability:   info.ComputeCapability,
				PCIBusID:            info.PCIBusID,
				Mig:                 &MigOf{Profile: m.Profile, ParentUUID: info.UUID},
			})
		}
	}
	return gpus, nil
}

// Status samples the gauges of a physical GPU.
func (c *Client) Status(ctx context.Context, index int) (DeviceStatus, error) {
	st, err := c.driver.DeviceStatus(ctx, index)
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("status of GPU %d: %w", index, err)
	}
	return st, nil
}

// Processes lists the compute processes on a physical GPU.
func (c *Client) Processes(ctx context.Context, index int) ([]ProcessInfo, error) {
	procs, err := c.driver.DeviceProcesses(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("processes on GPU %d: %w", index, err)
	}
	return procs, nil
}
