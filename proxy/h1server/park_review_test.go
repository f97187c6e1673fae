package h1server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// When idle.Park fails (a poller its run goroutine closed after a failed
// wait, or epoll_ctl failing: ENOSPC at fs.epoll.max_user_watches, ENOMEM)
// the connection waits in its goroutine instead. It once did so holding
// cc.mu, and Shutdown (which holds s.mu and takes every cc.mu in
// markClosing) and Close then blocked for up to IdleTimeout, ignoring
// Shutdown's ctx.
func failedParkServer(t *testing.T) (*Server, net.Conn, *bufio.Reader) {
	t.Helper()
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond, IdleTimeout: 6 * time.Second}
	addr, _ := serve(t, s)
	// The poller dies before anything parks (what run does on a failed wait).
	s.poller().Close()
	conns, readers := openKeepAlive(t, addr, 1)
	waitFor(t, "the park tried and the dead poller given up", 10*time.Second, s.gaveUpPoller)
	return s, conns[0], readers[0]
}

func TestShutdownIsNotBlockedByAConnectionWhoseParkFailed(t *testing.T) {
	s, c, br := failedParkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Errorf("Shutdown(ctx of 1 s) still blocked after %v: cc.mu held by park's fallback read", time.Since(start))
		<-done
	}
	expectClosed(t, c, br)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connection closed %v after Shutdown began", d)
	}
}

func TestCloseIsNotBlockedByAConnectionWhoseParkFailed(t *testing.T) {
	s, c, br := failedParkServer(t)
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v: cc.mu held by park's fallback read", d)
	}
	expectClosed(t, c, br)
}

// A parked connection whose next request is handed off (upgrade,
// 100-continue, CONNECT) gets there with every byte, and is then left
// alone by Close and Shutdown (no unpark, no close, no wg leak).
func TestHandOffAfterAWake(t *testing.T) {
	for name, req := range map[string]string{
		"upgrade":      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"100-continue": "POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		"CONNECT":      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			type taken struct {
				c   net.Conn
				buf string
			}
			got := make(chan taken, 1)
			s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond,
				HandOff: func(c net.Conn, b []byte) { got <- taken{c, string(b)} }}
			addr, _ := serve(t, s)
			conns, readers := openKeepAlive(t, addr, 1)
			waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 1 })
			io.WriteString(conns[0], req)
			var h taken
			select {
			case h = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("not handed off")
			}
			defer h.c.Close()
			if h.buf != req {
				t.Fatalf("handed off with %q, want %q", h.buf, req)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown after a hand-off: %v", err)
			}
			s.Close()
			// The new owner still has the connection: both ways.
			io.WriteString(h.c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			readers[0].Reset(conns[0])
			conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := http.ReadResponse(readers[0], nil)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("the handed-off connection was cut: %v", err)
			}
			io.WriteString(conns[0], "z")
			h.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 1)
			if _, err := io.ReadFull(h.c, b); err != nil || b[0] != 'z' {
				t.Fatalf("the new owner cannot read: %v", err)
			}
		})
	}
}

// Shutdown and Close racing with wakes: clients send their next request
// while the server closes. Shutdown must return and every connection end.
func TestShutdownRacingWakes(t *testing.T) {
	for i := range 5 {
		s := &Server{Handler: echo, ParkAfter: 5 * time.Millisecond}
		addr, _ := serve(t, s)
		conns, _ := openKeepAlive(t, addr, 30)
		waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 30 })
		for _, c := range conns {
			go io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if i%2 == 0 {
			err = s.Shutdown(ctx)
		} else {
			s.Close()
		}
		cancel()
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		waitFor(t, "every connection forgotten", 5*time.Second, func() bool { return s.tracked() == 0 })
		if s.Parked() != 0 {
			t.Fatalf("%d still parked after Shutdown/Close", s.Parked())
		}
	}
}

// Kills "cc.parked=false dropped from resume": a connection woken and
// served once is no longer parked; Close's unpark must not think so. With
// the flag stale, Unpark finds the waiter again only after the next park,
// so the check is that Shutdown (which unparks idle ones) still ends a
// re-parked connection and the count of goroutines ends at zero.
func TestWokenThenReparkedConnectionIsEndedByShutdown(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 2)
	for range 3 {
		waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 2 })
		for i := range conns {
			roundTrip(t, conns[i], readers[i])
		}
	}
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range conns {
		expectClosed(t, conns[i], readers[i])
	}
}

// Kills "bgCancel not cleared": after a request the connection holds no
// reference to its request's context.
func TestIdleConnectionHoldsNoRequestContext(t *testing.T) {
	var conn atomic.Pointer[conn]
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return ctx }}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 1)
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 1 })
	s.mu.Lock()
	for cc := range s.conns {
		conn.Store(cc)
	}
	s.mu.Unlock()
	cc := conn.Load()
	// Parked: no goroutine touches the connection until the wake, and
	// resume takes cc.mu first.
	cc.mu.Lock()
	parked, bgCancel, req, br := cc.parked, cc.bgCancel != nil, cc.req != nil, cc.br != nil
	cc.mu.Unlock()
	if !parked {
		t.Fatal("not parked")
	}
	if bgCancel {
		t.Error("a parked connection keeps its last request's cancel func (and context)")
	}
	if req {
		t.Error("a parked connection keeps its parsed head")
	}
	if br {
		t.Error("a parked connection keeps its read buffer")
	}
	roundTrip(t, conns[0], readers[0])
}

// The idle timeout holds while parked: a connection parked with 1.5 s
// left ends then, not sooner nor at the poller's next DeadlineTick.
func TestParkedConnectionEndsNearItsIdleTimeout(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond, IdleTimeout: 1500 * time.Millisecond}
	addr, _ := serve(t, s)
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, br, "GET")
	start := time.Now()
	waitFor(t, "parked", 5*time.Second, func() bool { return s.Parked() == 1 })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("%v", err)
	}
	// start is a little after the server's idle clock started: the lower
	// bound has slack for a slow machine; the upper, a wait of its own.
	if d := time.Since(start); d < time.Second || d > 1500*time.Millisecond+time.Second {
		t.Fatalf("ended after %v, want at its IdleTimeout (1.5 s)", d)
	}
}

// gaveUpPoller reports whether the server stopped using a poller that
// failed.
func (s *Server) gaveUpPoller() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.noPoller
}

// eventpolls counts this process's epoll descriptors (the runtime's one
// included).
func eventpolls(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[eventpoll]" {
			n++
		}
	}
	return n
}

// Kills "no closePoller in Close/Shutdown" and "closePoller a no-op": the
// server's epoll descriptor is closed once the server is.
func TestTheIdlePollerIsClosedWithTheServer(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			before := eventpolls(t)
			s := &Server{Handler: echo, ParkAfter: 10 * time.Millisecond}
			addr, _ := serve(t, s)
			openKeepAlive(t, addr, 2)
			waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 2 })
			if n := eventpolls(t); n != before+1 {
				t.Fatalf("%d epoll descriptors with the poller made, %d before", n, before)
			}
			if how == "Close" {
				s.Close()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if n := eventpolls(t); n != before {
				t.Fatalf("%d epoll descriptors after %s, %d before the server: the poller leaks", n, how, before)
			}
		})
	}
}

// Kills "poller made while shutting": a closed server makes no new poller.
func TestAClosedServerMakesNoPoller(t *testing.T) {
	s := &Server{Handler: echo}
	s.Close()
	if p := s.poller(); p != nil {
		p.Close()
		t.Fatal("a closed server made an idle poller (never closed again)")
	}
	s2 := &Server{Handler: echo}
	s2.Shutdown(context.Background())
	if p := s2.poller(); p != nil {
		p.Close()
		t.Fatal("a shut-down server made an idle poller")
	}
}

// Kills "ParkAfter ignored": a connection is not parked before ParkAfter.
func TestParkAfterIsHonoured(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: time.Hour}
	addr, _ := serve(t, s)
	openKeepAlive(t, addr, 1)
	time.Sleep(400 * time.Millisecond) // well past the 100 ms default
	if s.Parked() != 0 {
		t.Fatal("parked before ParkAfter")
	}
}

// Kills "park past the idle deadline": an idle timeout shorter than
// ParkAfter ends the connection on time, not at the poller's next sweep.
func TestIdleTimeoutShorterThanParkAfter(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 5 * time.Second, IdleTimeout: 200 * time.Millisecond}
	addr, _ := serve(t, s)
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, br, "GET")
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed %v after the response, IdleTimeout 200 ms (ParkAfter 5 s)", d)
	}
}

// Kills "no closing check in park": a connection marked closing is not
// parked (white-box: park on an open connection already marked).
func TestParkRefusesAClosingConnection(t *testing.T) {
	s := &Server{Handler: echo}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cc := &conn{s: s, c: sc}
	cc.raw, _ = sc.(*net.TCPConn).SyscallConn()
	cc.idleUntil = time.Now().Add(time.Minute)
	if !s.track(cc) {
		t.Fatal("not tracked")
	}
	cc.state = stateClosing
	idle := s.poller()
	err = cc.park(idle)
	if err != ErrServerClosed {
		t.Errorf("park of a closing connection: %v", err)
	}
	if err != errParked {
		s.untrack(cc)
	}
	if idle.Parked() != 0 {
		t.Fatal("a closing connection was parked")
	}
}

// Kills "cc.parked=false dropped from resume" (otherwise equivalent:
// Unpark's id check hides it): a woken connection, busy in its handler, is
// not marked parked.
func TestAWokenConnectionIsNotMarkedParked(t *testing.T) {
	inHandler, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := &Server{ParkAfter: 10 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 2 {
			inHandler <- struct{}{}
			<-release
		}
	})}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 1)
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 1 })
	io.WriteString(conns[0], "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-inHandler
	s.mu.Lock()
	for cc := range s.conns {
		cc.mu.Lock()
		if cc.parked {
			t.Error("a connection in its handler is still marked parked")
		}
		cc.mu.Unlock()
	}
	s.mu.Unlock()
	close(release)
	http.ReadResponse(readers[0], nil)
}
