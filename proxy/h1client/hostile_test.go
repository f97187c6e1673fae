package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func settle(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, before %d\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

// Each request answered by the connection's counter; the first response
// carries pipelined garbage that looks like a response.
func TestHostilePipelinedGarbage(t *testing.T) {
	for _, mode := range []string{"same-write", "later-write"} {
		t.Run(mode, func(t *testing.T) {
			var conns atomic.Int32
			addr := rawServer(t, func(c net.Conn) {
				id := conns.Add(1)
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					body := "c" + string('0'+rune(id)) + "r" + string('0'+rune(i))
					resp := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + body
					evil := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
					if i == 0 && mode == "same-write" {
						io.WriteString(c, resp+evil)
					} else if i == 0 && id == 1 {
						io.WriteString(c, resp)
						time.Sleep(20 * time.Millisecond)
						io.WriteString(c, evil)
					} else {
						io.WriteString(c, resp)
					}
				}
			})
			before := runtime.NumGoroutine()
			c := newClient(t, Config{})
			for i := 0; i < 3; i++ {
				res := get(t, c, context.Background(), "GET", "http://"+addr+"/")
				b := readAll(t, res)
				if b == "EVIL" {
					t.Fatalf("request %d got the garbage", i)
				}
				t.Logf("%d: %s", i, b)
				if mode == "later-write" && i == 0 {
					time.Sleep(60 * time.Millisecond)
				}
			}
			c.CloseIdleConnections()
			settle(t, before)
		})
	}
}

func TestHostileChunkedNeverEnds(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for {
			if _, err := io.WriteString(c, "1\r\nx\r\n"); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	before := runtime.NumGoroutine()
	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := get(t, c, ctx, "GET", "http://"+addr)
	start := time.Now()
	_, err := io.Copy(io.Discard, res.Body)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	res.Body.Close()
	if c.Idle() != 0 {
		t.Fatal("pooled")
	}
	settle(t, before)
}

func TestHostileInformationalFlood(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		for i := 0; i < 10000; i++ {
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"); err != nil {
				return
			}
		}
	})
	c := newClient(t, Config{})
	req, _ := http.NewRequest("GET", "http://"+addr, nil)
	if _, err := c.RoundTrip(req); !errors.Is(err, ErrTooManyInformational) {
		t.Fatal(err)
	}
}

func TestHostileSlowlorisHead(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for {
			if _, err := io.WriteString(c, "X"); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	before := runtime.NumGoroutine()
	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr, nil)
	start := time.Now()
	_, err := c.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	settle(t, before)
}

func TestHostileBodyLongerThanLength(t *testing.T) {
	var conns atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
		}
	})
	c := newClient(t, Config{})
	for i := 0; i < 5; i++ {
		if b := readAll(t, get(t, c, context.Background(), "GET", "http://"+addr)); b != "ok" {
			t.Fatalf("%d: %q", i, b)
		}
	}
	if conns.Load() != 5 {
		t.Errorf("conns %d", conns.Load())
	}
}

func TestHostileResetMidBody(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
		time.Sleep(20 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	before := runtime.NumGoroutine()
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+addr)
	_, err := io.ReadAll(res.Body)
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	res.Body.Close()
	if c.Idle() != 0 {
		t.Fatal("pooled")
	}
	settle(t, before)
}

func TestHostileUnsolicitedWhileIdle(t *testing.T) {
	var conns atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nc"+string('0'+rune(id))+"r"+string('0'+rune(i)))
			if i == 0 {
				time.Sleep(10 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
			}
		}
	})
	c := newClient(t, Config{})
	readAll(t, get(t, c, context.Background(), "GET", "http://"+addr))
	time.Sleep(50 * time.Millisecond)
	if b := readAll(t, get(t, c, context.Background(), "GET", "http://"+addr)); b != "c2r0" {
		t.Fatalf("%q", b)
	}
}

// Early response with keep-alive while the body is still being written
// and the upstream never reads the body: the connection must not be reused.
func TestHostileEarlyResponseKeepAlive(t *testing.T) {
	var conns atomic.Int32
	stop := make(chan struct{})
	addr := rawServer(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "POST" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
				// then never read the body; nothing else
				<-stop
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")
		}
	})
	t.Cleanup(func() { close(stop) })
	c := newClient(t, Config{})
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("part"))
	req, _ := http.NewRequest("POST", "http://"+addr, pr)
	req.ContentLength = 1 << 20
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, res); b != "early" {
		t.Fatal(b)
	}
	if c.Idle() != 0 {
		t.Fatal("a connection with half a request body went back to the pool")
	}
}

// Request-line injection through fields the client writes unchecked.
func TestSmugglingURL(t *testing.T) {
	got := make(chan string, 4)
	addr := rawServer(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	c := newClient(t, Config{})
	for _, u := range []*url.URL{
		{Scheme: "http", Host: addr, Path: "/", RawQuery: "a HTTP/1.1\r\nHost: x\r\n\r\nGET /admin"},
		{Scheme: "http", Host: addr, Opaque: "/x HTTP/1.1\r\nX-Injected: 1\r\nY:"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		req := (&http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: "h"}).WithContext(ctx)
		_, err := c.RoundTrip(req)
		cancel()
		if err == nil {
			t.Errorf("sent a target with control characters: %q%q", u.Opaque, u.RawQuery)
		}
		select {
		case wire := <-got:
			if strings.Contains(wire, "\r\nGET /admin") || strings.Contains(wire, "X-Injected") {
				t.Errorf("injected on the wire (err %v):\n%q", err, wire)
			}
		case <-time.After(100 * time.Millisecond): // refused before it was sent, as it should be
		}
	}
}
