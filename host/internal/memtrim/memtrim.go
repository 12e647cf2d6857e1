// Package memtrim hands the C heap's free memory back to the OS after
// kernels end. Each kernel's runner client holds two libzmq sockets, whose
// buffers libzmq allocates with malloc on its own threads; when the kernel
// goes, glibc keeps the freed memory in those threads' arenas, where the
// next kernels reuse it but the node never gets it back. With many short
// sessions an idle agent then keeps its busiest hour's C heap.
package memtrim

import (
	"context"
	"time"
)

// DefaultDelay gathers the terminations of one burst (a session's kernels,
// a reset) into one trim, and leaves libzmq's I/O thread time to free the
// closed sockets, which it does after zmq_close returns.
const DefaultDelay = 5 * time.Second

// Trimmer trims once, Delay after the first Note that follows the last
// trim. It does not wake while nothing is noted.
type Trimmer struct {
	delay time.Duration
	kick  chan struct{}
	trim  func() bool
}

// New makes a Trimmer that calls malloc_trim (a no-op without cgo or
// glibc).
func New(delay time.Duration) *Trimmer { return NewWith(delay, Trim) }

// NewWith makes a Trimmer around another trim function (tests count
// calls with it).
func NewWith(delay time.Duration, trim func() bool) *Trimmer {
	return &Trimmer{delay: delay, kick: make(chan struct{}, 1), trim: trim}
}

// Note says memory was probably freed: a kernel ended. It never blocks.
func (t *Trimmer) Note() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Run trims after Notes until ctx ends.
func (t *Trimmer) Run(ctx context.Context) error {
	timer := time.NewTimer(t.delay)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.kick:
		}
		timer.Reset(t.delay)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		// Notes that came during the delay are covered by this trim.
		select {
		case <-t.kick:
		default:
		}
		t.trim()
	}
}
