package idlepoll

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kills "EPOLLONESHOT dropped": once a waiter is woken, its socket (still
// readable: its owner now reads it through the runtime) must not keep
// reporting. Level-triggered, every wait returns at once with an event
// for no waiter: the run goroutine spins while anything else is parked.
func TestAWokenSocketIsNotReportedAgain(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	client, server := pair(t, ln)
	_, other := pair(t, ln)
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Something else stays parked, so the run goroutine keeps going.
	o, _ := waiter()
	if err := p.Park(o, raw(t, other), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("x")) // never read: the socket stays readable
	expectWake(t, woke, nil, 5*time.Second)
	// Look at the epoll set directly: nothing may be ready.
	var n int
	var err error
	p.mu.Lock()
	if !p.closed {
		events := make([]unix.EpollEvent, 8)
		n, err = unix.EpollWait(p.epfd, events, 0)
	}
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d events ready for a socket whose waiter was woken: the poller spins", n)
	}
}

// Kills "Unpark keeps the waiter" / checks the wake–Unpark race: each wait
// ends exactly once, by Wake or by an Unpark that reports true.
func TestWakeRacingUnparkEndsEachWaitOnce(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	rc := raw(t, server)
	var wakes atomic.Int64
	w := &Waiter{}
	wokeCh := make(chan struct{}, 1)
	w.Wake = func(error) { wakes.Add(1); wokeCh <- struct{}{} }
	buf := make([]byte, 64)
	unparked := 0
	for i := range 300 {
		if err := p.Park(w, rc, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		client.Write([]byte("x"))
		if i%3 != 0 {
			time.Sleep(time.Duration(i%7) * 20 * time.Microsecond)
		}
		if p.Unpark(w) {
			unparked++
		} else {
			select {
			case <-wokeCh:
			case <-time.After(5 * time.Second):
				t.Fatalf("wait %d: Unpark said woken, but no Wake came", i)
			}
		}
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := server.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if got := int(wakes.Load()); got+unparked != 300 {
		t.Fatalf("%d wakes + %d unparks for 300 waits", got, unparked)
	}
	if p.Parked() != 0 {
		t.Fatalf("%d left parked", p.Parked())
	}
}

// Park, Close and wakes racing: every Park that succeeded gets exactly one
// Wake; Parks after Close fail; Close returns.
func TestCloseRacingParksAndWakes(t *testing.T) {
	for range 20 {
		p, err := New()
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		const n = 40
		var parked, woken atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			client, server := pair(t, ln)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &Waiter{Wake: func(error) { woken.Add(1) }}
				if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err == nil {
					parked.Add(1)
				} else if !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
				if i%2 == 0 {
					client.Write([]byte("x"))
				}
			}()
		}
		time.Sleep(time.Duration(len(ln.Addr().String())%3) * time.Millisecond)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for woken.Load() != parked.Load() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if woken.Load() != parked.Load() {
			t.Fatalf("%d parked, %d woken", parked.Load(), woken.Load())
		}
		ln.Close()
	}
}

// The run goroutine stops and starts again with every wait: no wake is
// lost on the way.
func TestNoWakeLostAcrossRunRestarts(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	rc := raw(t, server)
	w, woke := waiter()
	buf := make([]byte, 8)
	for i := range 500 {
		if i%2 == 0 {
			client.Write([]byte("x")) // readable before the park
		}
		if err := p.Park(w, rc, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			client.Write([]byte("x"))
		}
		expectWake(t, woke, nil, 5*time.Second)
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := server.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// Kills "Close does not wake the waiters": a waiter parked when Close
// runs hears ErrClosed (TestCloseWakesEveryWaiterAndRefusesMore has it
// too); and Close called from a Wake does not deadlock.
func TestCloseFromAWake(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	client, server := pair(t, listen(t))
	closed := make(chan error, 1)
	w := &Waiter{Wake: func(error) { closed <- p.Close() }}
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("x"))
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close from a Wake did not return")
	}
}

// Kills "Close does not wait for the run goroutine": once Close returns,
// the run goroutine has exited.
func TestCloseWaitsForTheRunGoroutine(t *testing.T) {
	ln := listen(t)
	for range 20 {
		p, err := New()
		if err != nil {
			t.Fatal(err)
		}
		_, server := pair(t, ln)
		w, _ := waiter()
		if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		p.Close()
		select {
		case <-done:
		default:
			t.Fatal("Close returned with the run goroutine still running")
		}
	}
}

// Kills "the failed-wait path leaves the epoll file open": a wait that
// fails (here: the descriptor number made to point at a pipe) wakes the
// waiters with ErrClosed and closes the epoll file (Close, returning at
// once on a closed Poller, never would).
func TestAFailedWaitClosesThePoller(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, server := pair(t, listen(t))
	w, woke := waiter()
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	p.mu.Lock()
	err = unix.Dup2(fds[0], p.epfd) // epoll_wait now fails: EINVAL
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	expectWake(t, woke, ErrClosed, DeadlineTick+5*time.Second)
	if err := p.ep.SetReadDeadline(time.Now()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the epoll file is still open after its wait failed: %v", err)
	}
	if err := p.Park(w, raw(t, server), time.Now().Add(time.Minute)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Park on a failed Poller: %v", err)
	}
}
