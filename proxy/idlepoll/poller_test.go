package idlepoll

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T, ln net.Listener) (client, server *net.TCPConn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func raw(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// waiter returns a Waiter whose wakes arrive on the channel.
func waiter() (*Waiter, chan error) {
	woke := make(chan error, 4)
	return &Waiter{Wake: func(err error) { woke <- err }}, woke
}

func expectWake(t *testing.T, woke chan error, want error, within time.Duration) {
	t.Helper()
	select {
	case err := <-woke:
		if !errors.Is(err, want) && err != want {
			t.Fatalf("woken with %v, want %v", err, want)
		}
	case <-time.After(within):
		t.Fatalf("not woken within %v (want %v)", within, want)
	}
}

func expectNoWake(t *testing.T, woke chan error, for_ time.Duration) {
	t.Helper()
	select {
	case err := <-woke:
		t.Fatalf("woken (%v), want no wake", err)
	case <-time.After(for_):
	}
}

func TestWakesWhenReadableAndNotBefore(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	expectNoWake(t, woke, 100*time.Millisecond)
	client.Write([]byte("x"))
	expectWake(t, woke, nil, 5*time.Second)
	if p.Parked() != 0 {
		t.Fatalf("%d parked after the wake", p.Parked())
	}
	// Parked again (the one-shot registration re-armed), it wakes again.
	buf := make([]byte, 1)
	server.Read(buf)
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	expectNoWake(t, woke, 100*time.Millisecond)
	client.Write([]byte("y"))
	expectWake(t, woke, nil, 5*time.Second)
}

func TestWakesWhenThePeerCloses(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Close()
	expectWake(t, woke, nil, 5*time.Second)
}

func TestWakesAtTheDeadline(t *testing.T) {
	p := newPoller(t)
	_, server := pair(t, listen(t))
	w, woke := waiter()
	start := time.Now()
	if err := p.Park(w, raw(t, server), start.Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	expectWake(t, woke, ErrDeadline, DeadlineTick+5*time.Second)
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("woken after %v, before the deadline", waited)
	}
}

func TestUnparkedWaiterIsNotWoken(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !p.Unpark(w) {
		t.Fatal("Unpark of a parked waiter reported false")
	}
	if p.Unpark(w) {
		t.Fatal("a second Unpark reported true")
	}
	client.Write([]byte("x"))
	expectNoWake(t, woke, 200*time.Millisecond)
}

// A socket closed while parked (by someone else) leaves its waiter to the
// deadline, and the descriptor number, reused by a new socket, is watched
// for the new one.
func TestClosedWhileParkedAndDescriptorReused(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	_, server := pair(t, ln)
	old, oldWoke := waiter()
	if err := p.Park(old, raw(t, server), time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	server.Close()
	client2, server2 := pair(t, ln)
	w, woke := waiter()
	w.registered = true // as if this Waiter had parked the number before: MOD finds nothing, ADD is tried
	if err := p.Park(w, raw(t, server2), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client2.Write([]byte("x"))
	expectWake(t, woke, nil, 5*time.Second)
	expectWake(t, oldWoke, ErrDeadline, DeadlineTick+5*time.Second)
}

func TestCloseWakesEveryWaiterAndRefusesMore(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, server := pair(t, listen(t))
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	expectWake(t, woke, ErrClosed, 5*time.Second)
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Park after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Parked sockets cost no goroutine: a thousand of them leave the count
// where it was (plus the Poller's one), and the Poller's goroutine ends
// when the last one wakes.
func TestParkedSocketsHoldNoGoroutine(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	const n = 1000
	clients := make([]*net.TCPConn, n)
	woke := make(chan error, n)
	before := runtime.NumGoroutine()
	for i := range n {
		var server *net.TCPConn
		clients[i], server = pair(t, ln)
		w := &Waiter{Wake: func(err error) { woke <- err }}
		if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if g := runtime.NumGoroutine(); g > before+1 {
		t.Fatalf("%d goroutines with %d sockets parked, %d before", g, n, before)
	}
	for _, c := range clients {
		c.Write([]byte("x"))
	}
	for range n {
		expectWake(t, woke, nil, 10*time.Second)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Poller's goroutine still runs with nothing parked")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A deadline sooner than the running Poller's next look brings the look
// forward: the waiter wakes at its deadline, not up to a DeadlineTick late.
func TestAnEarlyDeadlineIsNotATickLate(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	_, first := pair(t, ln)
	long, _ := waiter()
	if err := p.Park(long, raw(t, first), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, second := pair(t, ln)
	w, woke := waiter()
	start := time.Now()
	if err := p.Park(w, raw(t, second), start.Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	expectWake(t, woke, ErrDeadline, 5*time.Second)
	if waited := time.Since(start); waited < 100*time.Millisecond || waited >= DeadlineTick {
		t.Fatalf("woken %v after parking with a 100 ms deadline; want it then, well before the %v tick", waited, DeadlineTick)
	}
}

// A socket forgotten after its wake is no longer in the epoll set.
func TestForgetDropsTheRegistration(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	w, woke := waiter()
	rc := raw(t, server)
	if err := p.Park(w, rc, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("x"))
	expectWake(t, woke, nil, 5*time.Second)
	inSet := func() bool {
		var err error
		rc.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT}
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		})
		return !errors.Is(err, unix.ENOENT)
	}
	if !inSet() {
		t.Fatal("the woken socket's registration is already gone: the test proves nothing")
	}
	p.Forget(w, rc)
	if inSet() {
		t.Fatal("Forget left the socket in the epoll set")
	}
	// Parked again, it is added back and wakes.
	buf := make([]byte, 1)
	server.Read(buf)
	if err := p.Park(w, rc, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("y"))
	expectWake(t, woke, nil, 5*time.Second)
}
