package h1client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A GET with a body that meets a connection closed under it: not sent again.
func TestGETWithBodyIsNotRetriedOnAnotherConnection(t *testing.T) {
	var dials atomic.Int32
	d := &net.Dialer{}
	c, addr, _ := reuseThenWith(t, Config{Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, n, a)
	}}, func(net.Conn, *http.Request) {})
	req, _ := http.NewRequest("GET", "http://"+addr, strings.NewReader("body"))
	if _, err := c.RoundTrip(req); err == nil || dials.Load() != 1 {
		t.Fatalf("%v, %d dials", err, dials.Load())
	}
}

// A body closed before its end, with nothing more buffered: not pooled.
func TestEarlyCloseEmptyBuffer(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		time.Sleep(200 * time.Millisecond)
		io.WriteString(c, "defghij")
	})
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+addr)
	io.ReadFull(res.Body, make([]byte, 3))
	res.Body.Close()
	if c.Idle() != 0 {
		t.Fatal("a connection with 7 bytes of body still to come went back to the pool")
	}
}

// The sweep closes connections that expire at different times.
func TestExpiryStaggered(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	s2 := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := newClient(t, Config{IdleConnTimeout: 100 * time.Millisecond})
	readAll(t, get(t, c, context.Background(), "GET", "http://"+s.addr()))
	time.Sleep(60 * time.Millisecond)
	readAll(t, get(t, c, context.Background(), "GET", "http://"+s2.addr()))
	time.Sleep(60 * time.Millisecond) // the first expired
	if c.Idle() != 1 {
		t.Fatalf("idle %d at 120ms", c.Idle())
	}
	time.Sleep(100 * time.Millisecond)
	if c.Idle() != 0 {
		t.Fatalf("idle %d at 220ms", c.Idle())
	}
}

func TestCloseIdleConnections(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := newClient(t, Config{})
	readAll(t, get(t, c, context.Background(), "GET", "http://"+s.addr()))
	c.CloseIdleConnections()
	if c.Idle() != 0 {
		t.Fatal("idle")
	}
	eventually(t, "the server to see the close", 5*time.Second, func() bool { return s.open.Load() == 0 })
}

func TestDefaultPortAndWire(t *testing.T) {
	addr, wire := headServer(t)
	var dialed []string
	c := newClient(t, Config{Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
		dialed = append(dialed, a)
		return net.Dial("tcp", addr)
	}})
	for _, tc := range []struct {
		req      func() *http.Request
		wantAddr string
		wantHead []string
	}{
		{func() *http.Request { r, _ := http.NewRequest("POST", "http://example", nil); return r }, "example:80", []string{"POST / HTTP/1.1\r\n", "Content-Length: 0\r\n"}},
		{func() *http.Request { r, _ := http.NewRequest("GET", "http://[::1]/", nil); return r }, "[::1]:80", []string{"GET / HTTP/1.1\r\n"}},
		{func() *http.Request {
			return &http.Request{Method: "OPTIONS", URL: &url.URL{Scheme: "http", Host: "h:1", Opaque: "*"}, Header: http.Header{"X": {"  v  "}}}
		}, "h:1", []string{"OPTIONS * HTTP/1.1\r\n", "X: v\r\n"}},
		{func() *http.Request {
			r, _ := http.NewRequest("POST", "http://h:2/", strings.NewReader("abc"))
			r.Trailer = http.Header{"X-B": nil, "X-A": nil}
			return r
		}, "h:2", []string{"Transfer-Encoding: chunked\r\n", "Trailer: X-A, X-B\r\n"}},
	} {
		dialed = nil
		res, err := c.RoundTrip(tc.req())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := <-wire
		if len(dialed) != 1 || dialed[0] != tc.wantAddr {
			t.Errorf("dialed %v, want %s", dialed, tc.wantAddr)
		}
		for _, w := range tc.wantHead {
			if !strings.Contains(h, w) {
				t.Errorf("head %q lacks %q", h, w)
			}
		}
	}
}
