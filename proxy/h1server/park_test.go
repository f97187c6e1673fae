package h1server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// openKeepAlive opens n connections to addr and makes one request on each.
func openKeepAlive(t *testing.T, addr string, n int) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	conns, readers := make([]net.Conn, n), make([]*bufio.Reader, n)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i], readers[i] = c, bufio.NewReader(c)
		roundTrip(t, c, readers[i])
	}
	return conns, readers
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

func TestParkedConnectionsHoldNoGoroutineAndServeOn(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond}
	addr, _ := serve(t, s)
	const n = 200
	before := runtime.NumGoroutine()
	conns, readers := openKeepAlive(t, addr, n)
	waitFor(t, "every idle connection parked", 10*time.Second, func() bool { return s.Parked() == n })
	// The accept loop's goroutines for each connection have ended; the
	// poller's one is all that may be added.
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Errorf("%d goroutines with %d connections parked, %d before they opened", g, n, before)
	}
	for i := range n {
		roundTrip(t, conns[i], readers[i])
	}
	waitFor(t, "the connections parked again", 10*time.Second, func() bool { return s.Parked() == n })
}

func TestParkedConnectionsTimeOut(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 3)
	for i := range conns {
		expectClosed(t, conns[i], readers[i])
	}
	waitFor(t, "the timed-out connections forgotten", 5*time.Second, func() bool { return s.tracked() == 0 })
}

func TestAClientThatLeavesWhileParkedIsForgotten(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond}
	addr, _ := serve(t, s)
	conns, _ := openKeepAlive(t, addr, 3)
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 3 })
	for _, c := range conns {
		c.Close()
	}
	// Not at the idle timeout (90 s): when the client's FIN arrives.
	waitFor(t, "the connections forgotten", 5*time.Second, func() bool { return s.tracked() == 0 })
}

// Shutdown ends parked connections at once: it would otherwise wait for
// their idle timeout (90 s), past this context.
func TestShutdownEndsParkedConnections(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 3)
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with parked connections: %v", err)
	}
	for i := range conns {
		expectClosed(t, conns[i], readers[i])
	}
}

func TestCloseEndsParkedConnections(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: 20 * time.Millisecond}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 3)
	waitFor(t, "parked", 10*time.Second, func() bool { return s.Parked() == 3 })
	s.Close()
	for i := range conns {
		expectClosed(t, conns[i], readers[i])
	}
	waitFor(t, "the connections forgotten", 5*time.Second, func() bool { return s.tracked() == 0 })
}

// A busy connection never parks: its requests come faster than ParkAfter.
func TestABusyConnectionIsNotParked(t *testing.T) {
	s := &Server{Handler: echo, ParkAfter: time.Hour}
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 1)
	for range 50 {
		roundTrip(t, conns[0], readers[0])
	}
	if s.Parked() != 0 {
		t.Fatal("a connection parked before ParkAfter")
	}
}

// goroutineAlive reports whether the goroutine with this ID exists.
func goroutineAlive(id string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "goroutine "+id+" [")
}

// goroutineID is the ID of the goroutine that calls it.
func goroutineID() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = s[len("goroutine "):]
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i]
		}
	}
	return s
}

func TestBusyConnectionKeepsItsGoroutineForHandOffAfter(t *testing.T) {
	// A request right after the last one is served by the goroutine that
	// served the last (its stack already grown), not a new one.
	s := &Server{HandOffAfter: time.Hour, ParkAfter: -1}
	ids := make(chan string, 2)
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ids <- goroutineID() })
	addr, _ := serve(t, s)
	conns, readers := openKeepAlive(t, addr, 1)
	first := <-ids
	roundTrip(t, conns[0], readers[0])
	if second := <-ids; second != first {
		t.Errorf("second request served by goroutine %s, the first by %s: handed off within HandOffAfter", second, first)
	}

	// Negative: the wait is handed off at once.
	s2 := &Server{HandOffAfter: -1, ParkAfter: -1}
	s2.Handler = s.Handler
	addr2, _ := serve(t, s2)
	conns, readers = openKeepAlive(t, addr2, 1)
	first = <-ids
	// The hand-off happens once the answer is written: the answer can
	// reach the client first, and a request sent at once still find the
	// goroutine there.
	waitFor(t, "the first request's goroutine to end", 10*time.Second, func() bool { return !goroutineAlive(first) })
	roundTrip(t, conns[0], readers[0])
	if second := <-ids; second == first {
		t.Errorf("second request served by the first one's goroutine %s with HandOffAfter < 0", first)
	}
}
