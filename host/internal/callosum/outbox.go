package callosum

import (
	"fmt"
	"syscall"

	zmq "github.com/pebbe/zmq4"
)

// outbox carries messages from any goroutine to the goroutine that owns a
// ZeroMQ socket (sockets are not goroutine-safe). Senders put frames on a Go
// channel; one forwarder goroutine owns a PUSH socket and hands them over an
// inproc pipe to the owner's PULL socket, which the owner polls together with
// its network socket.
type outbox struct {
	queue chan [][]byte
	push  *zmq.Socket // owned by the forwarder goroutine
	pull  *zmq.Socket // owned by the socket's owner
	stop  chan struct{}
	done  chan struct{}
}

// Every message over the inproc pipe starts with a tag frame, so that the
// wake-up cannot be confused with a caller's message of any shape.
var (
	tagData = []byte{0}
	tagWake = []byte{1}
)

func newOutbox(zctx *zmq.Context, size int) (*outbox, error) {
	o := &outbox{queue: make(chan [][]byte, size), stop: make(chan struct{}), done: make(chan struct{})}
	endpoint := fmt.Sprintf("inproc://callosum-outbox-%p", o)
	var err error
	if o.pull, err = zctx.NewSocket(zmq.PULL); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if o.push, err = zctx.NewSocket(zmq.PUSH); err != nil {
		o.pull.Close()
		return nil, fmt.Errorf("outbox: %w", err)
	}
	for _, s := range []*zmq.Socket{o.pull, o.push} {
		_ = s.SetLinger(0)
		_ = s.SetSndhwm(0)
		_ = s.SetRcvhwm(0)
	}
	if err := o.pull.Bind(endpoint); err != nil {
		o.pull.Close()
		o.push.Close()
		return nil, fmt.Errorf("outbox bind: %w", err)
	}
	if err := o.push.Connect(endpoint); err != nil {
		o.pull.Close()
		o.push.Close()
		return nil, fmt.Errorf("outbox connect: %w", err)
	}
	return o, nil
}

// forward runs in its own goroutine until close. When wake is closed it
// sends one wake message, so that the owner notices without a timeout.
func (o *outbox) forward(wake <-chan struct{}) {
	defer close(o.done)
	defer o.push.Close()
	for {
		select {
		case frames := <-o.queue:
			if _, err := o.push.SendMessage(tagData, frames); err != nil {
				return
			}
		case <-wake:
			wake = nil
			if _, err := o.push.SendMessage(tagWake); err != nil {
				return
			}
		case <-o.stop:
			return
		}
	}
}

// send queues frames for the owner; it gives up when abort is closed.
func (o *outbox) send(frames [][]byte, abort <-chan struct{}) bool {
	select {
	case o.queue <- frames:
		return true
	case <-abort:
		return false
	}
}

// close stops the forwarder and closes the owner's end; call it from the owner.
func (o *outbox) close() {
	close(o.stop)
	<-o.done
	o.pull.Close()
}

// receive reads every waiting message on the owner's end; wake is true for
// the wake-up.
func (o *outbox) receive(handle func(frames [][]byte, wake bool)) error {
	return receiveAll(o.pull, func(frames [][]byte) {
		if len(frames) == 0 {
			return
		}
		handle(frames[1:], frames[0][0] == tagWake[0])
	})
}

// receiveAll reads every message waiting on sock without blocking.
func receiveAll(sock *zmq.Socket, handle func([][]byte)) error {
	for {
		frames, err := sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				return nil
			}
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return err
		}
		handle(frames)
	}
}
