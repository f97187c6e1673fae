package h2client

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts net/http's HTTP/2 server (prior knowledge, plaintext) with h
// on a loopback port and returns its address.
func serve(t *testing.T, h http.Handler, tune ...func(*http.Server)) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p, HTTP2: &http.HTTP2Config{}}
	for _, f := range tune {
		f(srv)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), srv
}

// counter counts the connections a client dialed and the writes made on
// them.
type counter struct {
	dials, writes atomic.Int64
	mu            sync.Mutex
	conns         []net.Conn
}

type countingConn struct {
	net.Conn
	n *counter
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.writes.Add(1)
	return c.Conn.Write(p)
}

// client returns a Client that dials plaintext TCP, counting into n (if
// not nil).
func client(t *testing.T, n *counter, tune ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || n == nil {
			return nc, err
		}
		n.dials.Add(1)
		n.mu.Lock()
		n.conns = append(n.conns, nc)
		n.mu.Unlock()
		return countingConn{nc, n}, nil
	}}
	for _, f := range tune {
		f(&cfg)
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

// eventually waits for cond, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
