package h1server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

// benchRequest is a typical proxied request head: nine fields, 400 bytes.
const benchRequest = "GET /api/v1/items?page=2 HTTP/1.1\r\n" +
	"Host: web.shop.svc.cluster.local\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n" +
	"X-Request-Id: 7f3c2a9e-1b4d-4e8f-9a6b-2c1d3e4f5a6b\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"Cookie: session=abc123; theme=dark\r\n\r\n"

// benchServer measures requests over one keep-alive connection to a server
// (serveConn serves each accepted connection), with a client that
// allocates nothing: the allocations reported are the server's.
func benchServer(b *testing.B, serveConn func(net.Conn)) {
	ln := listenEach(b, serveConn)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	end := []byte("\r\n\r\nhi")
	req := []byte(benchRequest)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], end) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
}

var hi = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "2")
	io.WriteString(w, "hi")
})

// BenchmarkServer is this server; BenchmarkNetHTTPServer the baseline.
func BenchmarkServer(b *testing.B) {
	s := &Server{Handler: hi}
	defer s.Close()
	benchServer(b, func(c net.Conn) { s.ServeConn(c, nil) })
}

func BenchmarkNetHTTPServer(b *testing.B) {
	std := &http.Server{Handler: hi}
	one := make(chan net.Conn)
	go std.Serve(&chanListener{conns: one, done: make(chan struct{})})
	defer std.Close()
	benchServer(b, func(c net.Conn) { one <- c })
}

// listenEach listens on loopback and serves each accepted connection with
// serveConn in its own goroutine, until the listener is closed.
func listenEach(tb testing.TB, serveConn func(net.Conn)) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveConn(c)
		}
	}()
	return ln
}
