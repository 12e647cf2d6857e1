package session

import (
	"context"
	"errors"
	"sort"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// IsPulling answers check_pulling: whether a pull of the image is in
// flight, for a kernel or for check_and_pull.
func (s *Service) IsPulling(_ context.Context, image string) (bool, error) {
	if s.opts.Images == nil {
		return false, nil
	}
	return s.opts.Images.IsPulling(image), nil
}

// state is the kernel's state, or "" for a kernel this agent does not
// know; kernelID is in the dashed form (the RPC layer reads it so).
func (s *Service) state(kernelID string) string {
	info, err := s.kernels.Get(kernelID)
	if err != nil {
		return ""
	}
	return info.State
}

// IsCreating answers check_creating: true for a kernel being created or
// already registered, as upstream (agent/server.py).
func (s *Service) IsCreating(_ context.Context, kernelID string) (bool, error) {
	return s.state(kernelID) != "", nil
}

// IsRunning answers check_running.
func (s *Service) IsRunning(_ context.Context, kernelID string) (bool, error) {
	return s.state(kernelID) == "running", nil
}

// SyncWithManager is upstream's sync_kernel_registry: kernels the manager
// lists but this agent does not know are reported through
// OnAlreadyTerminated; local kernels the manager does not list are
// destroyed in the background with reason not-found-in-manager and their
// events suppressed. Kernels still being created are left alone (upstream
// registers a kernel only once created). Kernel ids are in the dashed form.
func (s *Service) SyncWithManager(ctx context.Context, live []sessionapi.KernelSession) error {
	local := map[string]kernel.Info{}
	for _, info := range s.kernels.List() {
		local[info.KernelID] = info
	}
	known := make(map[string]bool, len(live))
	for _, ks := range live {
		known[ks.KernelID] = true
		if _, ok := local[ks.KernelID]; !ok && s.opts.OnAlreadyTerminated != nil {
			s.opts.OnAlreadyTerminated(ctx, ks.KernelID, ks.SessionID)
		}
	}
	var stale []string
	for kid, info := range local {
		if !known[kid] && info.State == "running" {
			stale = append(stale, kid)
		}
	}
	sort.Strings(stale)
	for _, kid := range stale {
		s.suppressed.mark(kid, true)
		s.destroyInBackground(ctx, kid, lifecycle.NotFoundInManager, func(error) { s.suppressed.mark(kid, false) })
	}
	return nil
}

// GPUAllocMap is upstream's scan_gpu_alloc_map: the fractional CUDA shares
// (cuda.shares) allocated on each device, summed over this agent's
// kernels, as {device id: str(amount)}.
func (s *Service) GPUAllocMap(context.Context) (map[string]string, error) {
	sums := map[string]decimal.Decimal{}
	for _, info := range s.kernels.List() {
		for dev, amount := range info.Allocation["cuda"]["cuda.shares"] {
			sums[dev] = sums[dev].Add(amount)
		}
	}
	out := make(map[string]string, len(sums))
	for dev, d := range sums {
		if d.IsPositive() {
			out[dev] = d.String()
		}
	}
	return out, nil
}

// DestroyKernel is destroy_kernel. A kernel this agent does not know is
// answered with None and reported gone (already-terminated) unless the
// events are suppressed, so that the manager stops waiting for it
// (agent/agent.py, the destroy of a kernel missing from the registry).
func (s *Service) DestroyKernel(ctx context.Context, d sessionapi.Destroy) error {
	if d.Suppress {
		s.suppressed.mark(d.KernelID, true)
	}
	reason, destroy := d.Reason, s.kernels.Destroy
	if reason == "" {
		reason = lifecycle.UserRequested
	}
	if d.Verbatim {
		destroy = s.kernels.DestroyEcho
	}
	if _, err := destroy(ctx, d.KernelID, reason); err != nil {
		if d.Suppress {
			s.suppressed.mark(d.KernelID, false)
		}
		if errors.Is(err, kernel.ErrKernelNotFound) {
			if !d.Suppress && s.opts.OnAlreadyTerminated != nil {
				s.opts.OnAlreadyTerminated(ctx, d.KernelID, d.SessionID)
			}
			return nil
		}
		return NamedError(err)
	}
	return nil
}
