package kernel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// Reset is reset_agent: every kernel is destroyed, concurrently, and each
// termination is reported as usual. Upstream means the same (it calls
// destroy_kernel for every registered kernel) but passes "agent-reset"
// where the Docker backend expects a container id, so there the stop
// misses and nothing is destroyed; this does what upstream intends.
//
// Kernels still being created or restarted are destroyed once they
// settle: Reset returns when no kernel is left, or ctx ends.
func (m *Manager) Reset(ctx context.Context) ([]Termination, error) {
	var (
		mu    sync.Mutex
		terms []Termination
		errs  []error
	)
	for {
		m.mu.Lock()
		var ids []string
		busy := 0
		for id, k := range m.reg {
			switch {
			case k.state.busy():
				busy++
			case k.state == stateRunning:
				ids = append(ids, id)
			}
		}
		m.mu.Unlock()
		if len(ids) == 0 && busy == 0 {
			break
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t, err := m.Destroy(ctx, id, lifecycle.ForceTerminated)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					terms = append(terms, t)
				case errors.Is(err, ErrKernelNotFound), errors.Is(err, ErrNotRunning):
					// Gone meanwhile, or just started a restart: the next
					// round sees it.
				default:
					errs = append(errs, fmt.Errorf("kernel %s: %w", id, err))
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			break
		}
		if len(ids) == 0 {
			// Only kernels in creation or restart are left.
			select {
			case <-ctx.Done():
				return terms, fmt.Errorf("reset agent: %d kernels still being created or restarted: %w", busy, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return terms, fmt.Errorf("reset agent: %w", err)
	}
	return terms, nil
}
