package h1client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkRoundTrip compares this client with net/http's Transport on
// kept-alive requests to an upstream that answers each as fast as it can
// (a loop over a buffered connection, not an HTTP server): GET, and POST
// with a small body.
func BenchmarkRoundTrip(b *testing.B) {
	addr := fastUpstream(b)
	d := &net.Dialer{Timeout: 5 * time.Second}
	clients := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h1client", New(Config{Dial: d.DialContext, Fallback: http.DefaultTransport})},
		{"net-http", &http.Transport{DialContext: d.DialContext, DisableCompression: true}},
	}
	for _, method := range []string{"GET", "POST"} {
		for _, c := range clients {
			b.Run(method+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				body := strings.NewReader("")
				for b.Loop() {
					var rb io.Reader
					if method == "POST" {
						body.Reset(`{"order":42,"items":[1,2,3]}`)
						rb = body
					}
					req, _ := http.NewRequestWithContext(context.Background(), method, "http://"+addr+"/api/v1/items?page=2", rb)
					req.Header = http.Header{"Accept": {"application/json"}, "User-Agent": {"bench"}, "X-Request-Id": {"1234"}}
					res, err := c.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, res.Body); err != nil {
						b.Fatal(err)
					}
					res.Body.Close()
				}
			})
		}
	}
}

// fastUpstream answers every request on a connection with a fixed
// 200 response of 13 bytes.
func fastUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := io.Copy(c, bytes.NewReader([]byte(answer))); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
