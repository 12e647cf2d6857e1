// Package portpool hands out host ports for kernel services from
// container.port-range, keeping a released port out of use for
// container.port-reuse-cooldown-sec so that a late connection to a dead
// kernel never reaches a new one.
package portpool

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrExhausted means every port of the range is in use or cooling down.
var ErrExhausted = errors.New("port pool exhausted")

// ErrNotAssigned is returned when releasing a port that is not assigned.
var ErrNotAssigned = errors.New("port is not assigned")

// Pool is safe for concurrent use.
type Pool struct {
	min, max int
	cooldown time.Duration
	now      func() time.Time

	mu       sync.Mutex
	assigned map[int]bool
	cooling  map[int]time.Time // released port -> when it may be reused
	next     int               // round-robin cursor, so ports rotate
}

// New makes a pool over the inclusive range [min, max]. now may be nil (time.Now).
func New(min, max int, cooldown time.Duration, now func() time.Time) (*Pool, error) {
	if min < 1 || max > 65535 || min > max {
		return nil, fmt.Errorf("port range %d-%d is invalid", min, max)
	}
	if now == nil {
		now = time.Now
	}
	return &Pool{min: min, max: max, cooldown: cooldown, now: now,
		assigned: map[int]bool{}, cooling: map[int]time.Time{}, next: min}, nil
}

// Assign returns a free port.
func (p *Pool) Assign() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	size := p.max - p.min + 1
	for i := 0; i < size; i++ {
		port := p.min + (p.next-p.min+i)%size
		if p.assigned[port] {
			continue
		}
		if until, ok := p.cooling[port]; ok {
			if now.Before(until) {
				continue
			}
			delete(p.cooling, port)
		}
		p.assigned[port] = true
		p.next = port + 1
		if p.next > p.max {
			p.next = p.min
		}
		return port, nil
	}
	return 0, fmt.Errorf("%w: %d-%d", ErrExhausted, p.min, p.max)
}

// Reserve marks a port as assigned, e.g. one a recovered kernel still uses.
// Ports outside the range are ignored, as upstream does.
func (p *Pool) Reserve(port int) {
	if port < p.min || port > p.max {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.assigned[port] = true
	delete(p.cooling, port)
}

// Release returns a port; it can be assigned again after the cooldown.
func (p *Pool) Release(port int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.assigned[port] {
		return fmt.Errorf("release port %d: %w", port, ErrNotAssigned)
	}
	delete(p.assigned, port)
	if p.cooldown > 0 {
		p.cooling[port] = p.now().Add(p.cooldown)
	}
	return nil
}

// InUse reports the number of assigned ports.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.assigned)
}
