package idlepoll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DeadlineTick is the longest a running Poller waits between looks at its
// waiters' deadlines; it also looks when the earliest deadline comes.
const DeadlineTick = time.Second

// ErrClosed is returned by Park once the Poller is closed.
var ErrClosed = errors.New("idlepoll: poller closed")

// ErrDeadline is what a waiter whose deadline passed is woken with.
var ErrDeadline = fmt.Errorf("idlepoll: idle deadline passed: %w", os.ErrDeadlineExceeded)

// Waiter is one socket's place in a Poller. Its owner sets Wake once and
// reuses the Waiter for every wait of the same socket.
type Waiter struct {
	// Wake is called, in a new goroutine, when the socket is readable (or
	// its peer closed it, or it failed), with nil; or when the deadline
	// passed, with ErrDeadline. It is not called for a wait that Unpark
	// ended.
	Wake func(err error)

	id         uint64
	deadline   time.Time
	registered bool // the socket is in the epoll set (disabled when not parked)
}

// Poller watches parked sockets. The zero value is not usable: use New.
type Poller struct {
	ep   *os.File        // the epoll instance, non-blocking, in the runtime's poller
	raw  syscall.RawConn // ep's
	epfd int             // ep's descriptor (ep.Fd would make it blocking); used under mu while open

	mu      sync.Mutex
	waiters map[uint64]*Waiter
	nextID  uint64
	running bool
	closed  bool
	done    chan struct{} // closed when the run goroutine exits; nil while none runs
	// nextLook is when the run goroutine next looks at deadlines: the
	// earliest waiter's, or DeadlineTick after the last look. It is ep's
	// read deadline, set under mu.
	nextLook time.Time
}

// New makes a Poller.
func New() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("idlepoll: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("idlepoll: set non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "idlepoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("idlepoll: %w", err)
	}
	return &Poller{ep: ep, raw: raw, epfd: fd, waiters: map[uint64]*Waiter{}}, nil
}

// Park has p watch the socket behind rc until it is readable or deadline
// passes, then call w.Wake. The socket must not be read, closed or parked
// again until Wake is called or Unpark returns true.
func (p *Poller) Park(w *Waiter, rc syscall.RawConn, deadline time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.nextID++
	id := p.nextID
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id), Pad: int32(id >> 32)}
	var ctlErr error
	// Inside Control the socket cannot be closed under us: the descriptor
	// number registered is this socket's.
	err := rc.Control(func(fd uintptr) {
		first, second := unix.EPOLL_CTL_ADD, unix.EPOLL_CTL_MOD
		if w.registered {
			// Re-arm the one-shot registration an earlier wait left disabled.
			first, second = second, first
		}
		ctlErr = unix.EpollCtl(p.epfd, first, int(fd), &ev)
		if errors.Is(ctlErr, unix.EEXIST) || errors.Is(ctlErr, unix.ENOENT) {
			// Registered by another Waiter of the same socket, or dropped
			// (a descriptor closed and its number reused): the other way.
			ctlErr = unix.EpollCtl(p.epfd, second, int(fd), &ev)
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return fmt.Errorf("idlepoll: park: %w", err)
	}
	w.registered = true
	w.id, w.deadline = id, deadline
	p.waiters[id] = w
	if !p.running {
		p.running = true
		p.done = make(chan struct{})
		p.nextLook = earliest(time.Now().Add(DeadlineTick), deadline)
		go p.run(p.done)
	} else if deadline.Before(p.nextLook) {
		// The run goroutine's wait ends sooner.
		p.nextLook = deadline
		_ = p.ep.SetReadDeadline(deadline)
	}
	return nil
}

// Forget removes the socket behind rc, not parked now, from p's watch (a
// socket handed to someone else keeps no registration here). A socket
// closed before it is forgotten needs nothing.
func (p *Poller) Forget(w *Waiter, rc syscall.RawConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.registered || p.closed || p.waiters[w.id] == w {
		return
	}
	w.registered = false
	_ = rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Unpark ends w's wait without waking it; it reports whether w was parked
// (false: Wake has been or is being called).
func (p *Poller) Unpark(w *Waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters[w.id] != w {
		return false
	}
	delete(p.waiters, w.id)
	// The one-shot registration stays, armed; an event for it finds no
	// waiter and is dropped, and closing the socket removes it.
	return true
}

// Parked returns the number of waiters parked now.
func (p *Poller) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// Close stops p: later Parks fail, and every waiter still parked is woken
// with ErrClosed. It waits for the run goroutine to exit.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for id, w := range p.waiters {
		delete(p.waiters, id)
		go w.Wake(ErrClosed)
	}
	done := p.done
	p.mu.Unlock()
	// Closing the epoll file ends the run goroutine's wait.
	err := p.ep.Close()
	if done != nil {
		<-done
	}
	return err
}

// run dispatches readiness and deadlines until nothing is parked or p is
// closed.
func (p *Poller) run(done chan struct{}) {
	defer close(done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := p.wait(events)
		now := time.Now()
		p.mu.Lock()
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if w, ok := p.waiters[id]; ok {
				delete(p.waiters, id)
				go w.Wake(nil)
			}
		}
		if !now.Before(p.nextLook) {
			next := now.Add(DeadlineTick)
			for id, w := range p.waiters {
				if !now.Before(w.deadline) {
					delete(p.waiters, id)
					go w.Wake(ErrDeadline)
				} else {
					next = earliest(next, w.deadline)
				}
			}
			p.nextLook = next
		}
		if len(p.waiters) == 0 || p.closed || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) {
			// A failed wait that is not ours to end (not the deadline) would
			// spin: the waiters left are woken and the Poller closed.
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !p.closed {
				p.closed = true
				for id, w := range p.waiters {
					delete(p.waiters, id)
					go w.Wake(ErrClosed)
				}
				p.ep.Close()
			}
			p.running = false
			// A map keeps its size: one that held a spike of parked sockets
			// is let go with them.
			p.waiters = map[uint64]*Waiter{}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// wait collects ready events, waiting for them until nextLook (which Park
// may bring forward meanwhile).
func (p *Poller) wait(events []unix.EpollEvent) (int, error) {
	p.mu.Lock()
	err := p.ep.SetReadDeadline(p.nextLook)
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var n int
	var waitErr error
	err = p.raw.Read(func(fd uintptr) bool {
		for {
			n, waitErr = unix.EpollWait(int(fd), events, 0)
			if waitErr != unix.EINTR {
				break
			}
		}
		return waitErr != nil || n > 0
	})
	if err == nil {
		err = waitErr
	}
	if err != nil {
		n = 0
	}
	return n, err
}
