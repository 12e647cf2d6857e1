// Package portpool hands out host ports for kernel services from
// container.port-range, keeping a released port out of use for
// container.port-reuse-cooldown-sec so that a late connection to a dead
// kernel never reaches a new one.
package portpool

import (
	"errors"
	"fmt"
	"net"
	"strconv"
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
	free     func(port int) bool // nil: every unassigned port counts as free
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

// busyRecheck is how long a port that something else holds is skipped.
const busyRecheck = 10 * time.Second

// CheckWith makes Assign skip ports that free says are taken by another
// program (Docker would fail to publish them); see ListenProbe.
func (p *Pool) CheckWith(free func(port int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = free
}

// ListenProbe reports a port free when a TCP listener can be bound on
// host:port for a moment.
func ListenProbe(host string) func(port int) bool {
	return func(port int) bool {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = ln.Close()
		return true
	}
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
		if p.free != nil && !p.free(port) {
			p.cooling[port] = now.Add(busyRecheck)
			continue
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

// Reserve marks a port as assigned, e.g. one a recovered kernel still uses,
// and reports whether the pool holds it now. Ports outside the range are
// ignored (false), as upstream does.
func (p *Pool) Reserve(port int) bool {
	if port < p.min || port > p.max {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.assigned[port] = true
	delete(p.cooling, port)
	return true
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
