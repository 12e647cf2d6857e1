package session

import "sync"

// Suppressions are the kernels whose next kernel_terminated must not be
// sent: destroy_kernel with suppress_events=True, or a destroy by
// sync_kernel_registry (upstream's suppress_events). The session service
// marks them; the kernel manager's termination handler takes the mark
// before it emits, so one value made first is handed to both.
type Suppressions struct {
	mu  sync.Mutex
	set map[string]bool
}

// NewSuppressions makes an empty set.
func NewSuppressions() *Suppressions { return &Suppressions{set: map[string]bool{}} }

// Take reports whether the kernel's termination event must not be sent,
// and forgets the mark.
func (s *Suppressions) Take(kernelID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	on := s.set[kernelID]
	delete(s.set, kernelID)
	return on
}

func (s *Suppressions) mark(kernelID string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.set[kernelID] = true
	} else {
		delete(s.set, kernelID)
	}
}
