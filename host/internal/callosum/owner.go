package callosum

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/sys/unix"
)

// outgoing is a message queued for a socket's owner. sent, if set, runs on
// the owner's goroutine after the send, with its error.
type outgoing struct {
	frames [][]byte
	sent   func(error)
}

// socketOwner lets many goroutines use one ZeroMQ socket, which is not
// goroutine-safe: one goroutine runs the owner's loop and is the only one
// to touch the socket; others queue messages for it and, when it sleeps,
// wake it through an eventfd.
//
// The loop sleeps in poll(2) on the socket's ZMQ_FD and the eventfd, not in
// zmq_poll: zmq_poll looks at every socket's mailbox before and after it
// sleeps, a poll(2) each, and those system calls were most of what a
// request cost the server beyond a bare echo. (The Go runtime's poller was
// tried as well: it cost 40 µs per round trip in wake-ups between threads.)
// Under load the loop sends and receives in batches.
type socketOwner struct {
	sock *zmq.Socket
	fd   int // sock's ZMQ_FD: readable when the socket may have news
	wake int // an eventfd that queuers write to wake a sleeping owner

	mu       sync.Mutex // guards queue, pending, sleeping, stopping
	queue    []outgoing
	pending  bool // a wake-up (or a message) came since the loop last looked
	sleeping bool
	stopping bool

	handedOff bool // owner's goroutine only: see handOff
}

func newSocketOwner(sock *zmq.Socket) (*socketOwner, error) {
	fd, err := sock.GetFd()
	if err != nil {
		return nil, fmt.Errorf("zmq fd: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("socket owner eventfd: %w", err)
	}
	return &socketOwner{sock: sock, fd: fd, wake: wake}, nil
}

// errOwnerStopped is returned by enqueue after stop.
var errOwnerStopped = errors.New("socket owner stopped")

// enqueue queues m for the owner and wakes it.
func (o *socketOwner) enqueue(m outgoing) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopping {
		return errOwnerStopped
	}
	o.queue = append(o.queue, m)
	o.wakeLocked()
	return nil
}

// wakeUp makes the owner run its loop once more (its tick sees why).
func (o *socketOwner) wakeUp() {
	o.mu.Lock()
	o.wakeLocked()
	o.mu.Unlock()
}

// handOff tells the owner that a message it received was handed to another
// goroutine whose answer will be queued soon. Only the owner's goroutine
// (that is, onMessage) calls it.
func (o *socketOwner) handOff() { o.handedOff = true }

// stop makes run return once what is queued has been sent.
func (o *socketOwner) stop() {
	o.mu.Lock()
	o.stopping = true
	o.wakeLocked()
	o.mu.Unlock()
}

func (o *socketOwner) wakeLocked() {
	o.pending = true // so that an owner about to sleep does not
	if o.sleeping {
		o.sleeping = false
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(o.wake, one[:])
	}
}

// run is the owner's loop. It sends what is queued, hands every received
// message to onMessage, asks tick whether to stop (and when to look again
// at the latest, 0 for no limit), and sleeps. It returns nil after stop or
// when tick says so, or the error of a failed receive. Everything it calls
// back runs on its goroutine, which may use the socket directly.
func (o *socketOwner) run(onMessage func([][]byte), tick func() (stop bool, within time.Duration)) error {
	var batch []outgoing
	for {
		o.mu.Lock()
		batch, o.queue = o.queue, batch[:0]
		o.pending = false
		stopping := o.stopping
		o.mu.Unlock()
		for i := range batch {
			err := sendAll(o.sock, batch[i].frames)
			if batch[i].sent != nil {
				batch[i].sent(err)
			}
			batch[i] = outgoing{}
		}
		if stopping {
			return nil
		}
		stop, within := tick()
		if stop {
			return nil
		}
		if err := o.receiveOrSleep(onMessage, within); err != nil {
			return err
		}
	}
}

// receiveOrSleep receives whatever has arrived and, when nothing is queued,
// sleeps until the socket's fd signals, within passes, or someone wakes the
// owner. libzmq signals the fd on an edge only, after a receive found
// nothing, so the receiving comes first (sending, too, may have taken the
// edge of a message already there).
func (o *socketOwner) receiveOrSleep(onMessage func([][]byte), within time.Duration) error {
	if err := receiveAll(o.sock, onMessage); err != nil {
		return err
	}
	if o.handedOff {
		// Let the goroutines just started run before sleeping: most
		// answer at once, and their replies are then sent in this
		// loop's next turn, without waking the owner from poll(2)
		// through the eventfd (check_creating: 138 -> 98 us p50).
		o.handedOff = false
		runtime.Gosched()
	}
	o.mu.Lock()
	if o.pending || o.stopping {
		o.mu.Unlock()
		return nil
	}
	o.sleeping = true
	o.mu.Unlock()
	timeout := -1
	if within > 0 {
		timeout = int(within.Milliseconds())
	}
	// ZMQ_FD is edge-triggered, and the edge can be consumed inside
	// libzmq (a send or a receive that ends in EAGAIN processes the
	// socket's commands) while a message is left readable. ZMQ_EVENTS is
	// libzmq's word on it: after it says "nothing to read", ZMQ_FD signals
	// the next change. Without this check a message could wait for the
	// next unrelated wake-up (TestSocketOwnerDeliversEverything lost two of
	// 4000 under load).
	if ev, err := o.sock.GetEvents(); err == nil && ev&zmq.POLLIN != 0 {
		timeout = 0
	}
	fds := []unix.PollFd{{Fd: int32(o.fd), Events: unix.POLLIN}, {Fd: int32(o.wake), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, timeout)
	o.mu.Lock()
	o.sleeping = false
	o.mu.Unlock()
	if fds[1].Revents != 0 {
		var buf [8]byte
		_, _ = unix.Read(o.wake, buf[:])
	}
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("socket owner poll: %w", err)
	}
	return nil
}

// close releases the eventfd; the socket stays the caller's to close.
func (o *socketOwner) close() { unix.Close(o.wake) }

// sendAll sends one multipart message. Sockets here have no send high-water
// mark, so a send does not block.
func sendAll(sock *zmq.Socket, frames [][]byte) error {
	for {
		_, err := sock.SendMessage(frames)
		if err != nil && zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
			continue
		}
		return err
	}
}

// receiveAll reads every message waiting on sock without blocking.
func receiveAll(sock *zmq.Socket, handle func([][]byte)) error {
	for {
		frames, err := sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			switch zmq.AsErrno(err) {
			case zmq.Errno(syscall.EAGAIN):
				return nil
			case zmq.Errno(syscall.EINTR):
				continue
			}
			return err
		}
		handle(frames)
	}
}
