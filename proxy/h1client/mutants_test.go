package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The fixed form of TestClosedIdleConnectionIsNotUsed: the first body is
// read to its end, so a connection is pooled before the upstream closes it.
func TestPeekedIdleConnection(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
	c := newClient(t, Config{})
	readAll(t, get(t, c, context.Background(), "GET", "http://"+s.addr()))
	if c.Idle() != 1 {
		t.Fatalf("idle %d after a body read to its end", c.Idle())
	}
	eventually(t, "the server to close the idle connection", 5*time.Second, func() bool { return s.open.Load() == 0 })
	req, _ := http.NewRequest("POST", "http://"+s.addr(), io.NopCloser(strings.NewReader("not idempotent")))
	req.ContentLength = 14
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST after the upstream closed the idle connection: %v", err)
	}
	readAll(t, res)
}

// A context done after the response's last byte was buffered, before the
// body is read: the connection's deadline is in the past; not pooled.
func TestCancelledWithBufferedBody(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newClient(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	res := get(t, c, ctx, "GET", "http://"+s.addr())
	cancel()
	time.Sleep(20 * time.Millisecond)
	io.ReadAll(res.Body)
	res.Body.Close()
	if c.Idle() != 0 {
		t.Fatal("a connection whose context's interrupt ran went back to the pool")
	}
}

// An upstream that closes every connection unanswered: an error, no spin.
func TestUpstreamClosesEveryConnection(t *testing.T) {
	var n atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		n.Add(1)
		http.ReadRequest(bufio.NewReader(c))
		c.Close()
	})
	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr, nil)
	_, err := c.RoundTrip(req)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || n.Load() != 1 {
		t.Fatalf("%v after %d connections", err, n.Load())
	}
}

// reuseThen primes one pooled connection; the second request on it is
// handled by second.
func reuseThen(t *testing.T, second func(c net.Conn, req *http.Request)) (*Client, string, *atomic.Int32) {
	return reuseThenWith(t, Config{}, second)
}

// reuseThenWith is reuseThen with a client of cfg.
func reuseThenWith(t *testing.T, cfg Config, second func(c net.Conn, req *http.Request)) (*Client, string, *atomic.Int32) {
	var served atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for first := true; ; first = false {
			req, err := http.ReadRequest(br)
			if err != nil {
				c.Close()
				return
			}
			io.Copy(io.Discard, req.Body)
			served.Add(1)
			if !first {
				second(c, req)
				c.Close()
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newClient(t, cfg)
	readAll(t, get(t, c, context.Background(), "GET", "http://"+addr))
	served.Store(0)
	return c, addr, &served
}

// A GET that got a byte of answer is not sent again.
func TestPartialAnswerNotRetried(t *testing.T) {
	c, addr, served := reuseThen(t, func(c net.Conn, _ *http.Request) { io.WriteString(c, "HTTP/1.1 200") })
	req, _ := http.NewRequest("GET", "http://"+addr, nil)
	if _, err := c.RoundTrip(req); err == nil || served.Load() != 1 {
		t.Fatalf("%v, served %d", err, served.Load())
	}
}

// A GET with a body is not sent again (its body was read).
func TestGETWithBodyIsNotRetried(t *testing.T) {
	c, addr, served := reuseThen(t, func(net.Conn, *http.Request) {})
	req, _ := http.NewRequest("GET", "http://"+addr, strings.NewReader("body"))
	if _, err := c.RoundTrip(req); err == nil || served.Load() != 1 {
		t.Fatalf("%v, served %d", err, served.Load())
	}
}

// A request with an Idempotency-Key is sent again.
func TestIdempotencyKeyRetried(t *testing.T) {
	c, addr, served := reuseThen(t, func(net.Conn, *http.Request) {})
	req, _ := http.NewRequest("DELETE", "http://"+addr, nil)
	req.Header.Set("Idempotency-Key", "k")
	res, err := c.RoundTrip(req)
	if err != nil || served.Load() != 2 {
		t.Fatalf("%v, served %d", err, served.Load())
	}
	readAll(t, res)
}

// A chunked upload that breaks off does not end with the last chunk: the
// upstream must not take a truncated body as whole.
func TestChunkedUploadBrokenOff(t *testing.T) {
	got := make(chan error, 1)
	addr := rawServer(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			got <- err
			return
		}
		_, err = io.ReadAll(req.Body)
		got <- err
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := newClient(t, Config{})
	broken := errors.New("client went away")
	req, _ := http.NewRequest("POST", "http://"+addr, io.NopCloser(io.MultiReader(strings.NewReader("part"), &failReader{broken})))
	req.ContentLength = -1
	_, err := c.RoundTrip(req)
	if serr := <-got; serr == nil || !errors.Is(err, broken) {
		t.Fatalf("upstream read the truncated body whole (%v); RoundTrip %v", serr, err)
	}
}

// A streamed chunked body reaches the upstream piece by piece.
func TestChunkedStreams(t *testing.T) {
	seen := make(chan string, 4)
	addr := rawServer(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		seen <- "head"
		buf := make([]byte, 10)
		n, _ := req.Body.Read(buf)
		seen <- string(buf[:n])
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := newClient(t, Config{})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr, pr)
	req.ContentLength = -1
	done := make(chan error, 1)
	go func() {
		res, err := c.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	for _, want := range []string{"head", "ping"} {
		if want == "ping" {
			go pw.Write([]byte("ping"))
		}
		select {
		case s := <-seen:
			if s != want {
				t.Fatalf("%q, want %q", s, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("the upstream did not see %q", want)
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Requests that cannot be written are refused before anything is sent.
func TestRefusalsSendNothing(t *testing.T) {
	dialed := 0
	c := newClient(t, Config{Dial: func(context.Context, string, string) (net.Conn, error) {
		dialed++
		return nil, errors.New("dialed")
	}})
	for name, mod := range map[string]func(*http.Request){
		"value":      func(r *http.Request) { r.Header = http.Header{"X-A": {"a\r\nInjected: 1"}} },
		"name":       func(r *http.Request) { r.Header = http.Header{"Bad Name": {"v"}} },
		"trailer":    func(r *http.Request) { r.Trailer = http.Header{"Bad Name": nil} },
		"method":     func(r *http.Request) { r.Method = "GET /x HTTP/1.1\r\n" },
		"host":       func(r *http.Request) { r.Host = "h\r\nX: y" },
		"cl-no-body": func(r *http.Request) { r.ContentLength = 5 },
	} {
		req, _ := http.NewRequest("GET", "http://x", nil)
		mod(req)
		if _, err := c.RoundTrip(req); err == nil || err.Error() == "dialed" {
			t.Errorf("%s: %v", name, err)
		}
	}
	if dialed != 0 {
		t.Errorf("dialed %d times", dialed)
	}
}

// A body closed before its end: the connection is not pooled.
func TestEarlyCloseNotPooled(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 100<<10)) }))
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+s.addr())
	io.ReadFull(res.Body, make([]byte, 10))
	res.Body.Close()
	if c.Idle() != 0 {
		t.Fatal("pooled")
	}
}

// After Close, an exchange that ends does not go back to the pool, and
// new requests fail.
func TestCloseWhileInFlight(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+s.addr())
	c.Close()
	readAll(t, res)
	if c.Idle() != 0 {
		t.Error("pooled after Close")
	}
	req, _ := http.NewRequest("GET", "http://"+s.addr(), nil)
	if _, err := c.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// The request's own framing fields are not forwarded from its Header.
func TestFramingFieldsFromHeaderDropped(t *testing.T) {
	addr, wire := headServer(t)
	c := newClient(t, Config{})
	req, _ := http.NewRequest("POST", "http://"+addr, io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = -1
	req.Header = http.Header{"Content-Length": {"3"}, "Transfer-Encoding": {"identity"}, "Trailer": {"X"}}
	res, err := c.RoundTrip(req)
	if err == nil {
		res.Body.Close()
	}
	h := <-wire
	if strings.Count(strings.ToLower(h), "content-length") != 0 || strings.Count(strings.ToLower(h), "transfer-encoding") != 1 || strings.Contains(h, "Trailer") {
		t.Errorf("head:\n%s", h)
	}
}

// A body shorter than its ContentLength fails the request at once.
func TestShortBody(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	c := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", "http://"+s.addr(), io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = 10
	if _, err := c.RoundTrip(req); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v", err)
	}
}

// RoundTrip closes the request body, whatever happens.
func TestBodyClosed(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	c := newClient(t, Config{})
	for _, bad := range []bool{false, true} {
		b := &closeRecorder{Reader: strings.NewReader("abc")}
		req, _ := http.NewRequest("PUT", "http://"+s.addr(), b)
		req.ContentLength = 3
		if bad {
			req.Header.Set("X", "a\nb")
		}
		res, err := c.RoundTrip(req)
		if err == nil {
			readAll(t, res)
		}
		eventually(t, "the body to be closed", time.Second, func() bool { return b.closed.Load() })
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// MaxResponseHeaderBytes under the pooled buffer's size.
func TestSmallHeaderLimit(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("v", 4000)+"\r\nContent-Length: 0\r\n\r\n")
	})
	c := newClient(t, Config{MaxResponseHeaderBytes: 1024})
	req, _ := http.NewRequest("GET", "http://"+addr, nil)
	if _, err := c.RoundTrip(req); !errors.Is(err, ErrHeadTooLarge) {
		t.Errorf("a 4 KB head with a 1 KiB limit: %v", err)
	}
}
