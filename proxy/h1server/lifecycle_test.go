package h1server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// handOffs records the connections handed off and the bytes that came with them.
type handOffs struct{ got chan string }

func (h *handOffs) take(c net.Conn, buffered []byte) {
	c.Close()
	h.got <- string(buffered)
}

func TestRequestsItDoesNotServeAreHandedOffWithTheirBytes(t *testing.T) {
	h := &handOffs{got: make(chan string, 1)}
	addr, _ := serve(t, &Server{Handler: echo, HandOff: h.take})
	big := "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", BufferSize) + "\r\n\r\n"
	for name, req := range map[string]string{
		"upgrade":      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"100-continue": "POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		"CONNECT":      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"large head":   big,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A request served first: the hand-off starts at the next one.
			io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			io.WriteString(c, req)
			select {
			case got := <-h.got:
				// All that was read: the whole request, or a full buffer of it.
				if !strings.HasPrefix(req, got) || len(got) < min(len(req), BufferSize) {
					t.Errorf("handed off with %.60q, want a prefix of the request %.60q", got, req)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not handed off")
			}
		})
	}
}

func TestAGoneClientCancelsItsRequest(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- nil
		case <-time.After(10 * time.Second):
			cancelled <- context.DeadlineExceeded
		}
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	c.Close()
	if err := <-cancelled; err != nil {
		t.Error("the request's context was not cancelled when its client went away")
	}
}

// TestClientGoneDecidesWhatCancels: a server that lets clients half-close
// (ClientGone says no to EOF) answers a client that closed its sending
// side, its request's context never cancelled; the connection then ends.
func TestClientGoneDecidesWhatCancels(t *testing.T) {
	heard := make(chan error, 1)
	addr, _ := serve(t, &Server{
		ClientGone: func(err error) bool {
			heard <- err
			return !errors.Is(err, io.EOF)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-heard: // the half-close was read while this ran
			case <-time.After(10 * time.Second):
			}
			if err := r.Context().Err(); err != nil {
				http.Error(w, "cancelled", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "still here")
		}),
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "still here" {
		t.Errorf("a half-closed client got %d %q, want its answer", res.StatusCode, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection was kept after its client's EOF: %v", err)
	}
}

func TestIdleConnectionsTimeOut(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: echo, IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection was not closed after its idle timeout: %v", err)
	}
}

func TestShutdownClosesIdleConnectionsAndFinishesActiveOnes(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})}
	addr, _ := serve(t, s)
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idleR := bufio.NewReader(idle)
	if res, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	active, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	io.WriteString(active, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("Shutdown left an idle connection open: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	active.SetReadDeadline(time.Now().Add(5 * time.Second))
	activeR := bufio.NewReader(active)
	res, err := http.ReadResponse(activeR, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != "done" || !res.Close {
		t.Errorf("the request in flight got %q (close %v), want its answer and Connection: close", b, res.Close)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Shutdown did not return after the last request")
	}
}

// idleCost opens n keep-alive connections to serveConn's server, makes one
// request on each, and returns the heap and stack bytes the server holds per
// idle connection afterwards, once settled returns true (nil: at once).
func idleCost(t *testing.T, n int, serveConn func(net.Conn), settled func() bool) float64 {
	t.Helper()
	ln := listenEach(t, serveConn)
	defer ln.Close()
	before := inUse()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if settled != nil {
		waitFor(t, "the idle connections settled", 30*time.Second, settled)
	}
	after := inUse()
	return float64(after-before) / float64(n)
}

// inUse is the heap and stack memory in use after a collection, without
// the client side's share: both sides live in the test process, so each
// measurement holds the same client connections.
func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func TestAnIdleConnectionCostsAFractionOfNetHTTPs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("opens 2,000 connections; the race detector's own memory per goroutine would be measured")
	}
	const n = 1000
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
	s := &Server{Handler: hello, ParkAfter: -1}
	defer s.Close()
	ours := idleCost(t, n, func(c net.Conn) { s.ServeConn(c, nil) }, nil)
	ps := &Server{Handler: hello, ParkAfter: 10 * time.Millisecond}
	defer ps.Close()
	parked := idleCost(t, n, func(c net.Conn) { ps.ServeConn(c, nil) }, func() bool { return ps.Parked() == n })
	std := &http.Server{Handler: hello}
	one := make(chan net.Conn)
	go std.Serve(&chanListener{conns: one, done: make(chan struct{})})
	defer std.Close()
	theirs := idleCost(t, n, func(c net.Conn) { one <- c }, nil)
	t.Logf("memory held per idle keep-alive connection (server and client side together): h1server %.0f B (parked %.0f B), net/http %.0f B", ours, parked, theirs)
	if ours > theirs/2 {
		t.Errorf("an idle connection costs %.0f B here, net/http's %.0f B: want at most half", ours, theirs)
	}
	// Parked, it holds no goroutine: at least the smallest stack (2 KiB) less.
	if parked > ours-2048 {
		t.Errorf("a parked idle connection costs %.0f B, one waiting in its goroutine %.0f B: want 2 KiB less", parked, ours)
	}
}

// chanListener hands net/http's server the connections sent to it.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
