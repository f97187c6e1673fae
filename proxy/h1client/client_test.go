package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestKeepAliveReusesOneConnection(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.RequestURI())
		io.WriteString(w, "hello "+r.Host)
	}))
	c := newClient(t, Config{})
	for i := range 20 {
		res := get(t, c, context.Background(), "GET", "http://"+s.addr()+"/a%2Fb?q=1")
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(b) != "hello "+s.addr() || res.StatusCode != 200 || res.Header.Get("X-Path") != "/a%2Fb?q=1" {
			t.Fatalf("request %d: %d %q %v %v", i, res.StatusCode, b, res.Header, err)
		}
		if res.ContentLength != int64(len(b)) || res.Status != "200 OK" || res.Proto != "HTTP/1.1" {
			t.Fatalf("response fields: %d %q %q", res.ContentLength, res.Status, res.Proto)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("20 sequential requests took %d connections, want 1", n)
	}
	if c.Idle() != 1 {
		t.Errorf("idle connections: %d, want 1", c.Idle())
	}
}

func TestBodiesAndTrailersBothWays(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server reading the body: %v", err)
		}
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Req-Length", strings.Join([]string{r.Header.Get("Content-Length"), strings.Join(r.TransferEncoding, ",")}, "/"))
		w.(http.Flusher).Flush() // chunked: the length is unknown
		io.WriteString(w, string(b)+"|"+r.Trailer.Get("X-Client-Sum"))
		w.Header().Set("X-Sum", "42")
	}))
	c := newClient(t, Config{})
	cases := []struct {
		name       string
		body       io.Reader
		length     int64
		trailer    http.Header
		wantFrame  string
		wantEchoed string
	}{
		{"content-length", strings.NewReader("abc"), 3, nil, "3/", "abc|"},
		{"unknown length", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")), -1, nil, "/chunked", "abcd|"},
		{"trailers", strings.NewReader("xyz"), 3, http.Header{"X-Client-Sum": {"7"}}, "/chunked", "xyz|7"},
		{"large", strings.NewReader(strings.Repeat("z", 100<<10)), 100 << 10, nil, "102400/", strings.Repeat("z", 100<<10) + "|"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+s.addr()+"/", io.NopCloser(tc.body))
			req.ContentLength, req.Trailer = tc.length, tc.trailer
			res, err := c.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := res.Trailer["X-Sum"]; !ok {
				t.Errorf("announced trailers before the body: %v", res.Trailer)
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || string(b) != tc.wantEchoed {
				t.Fatalf("echoed %.40q, %v; want %.40q", b, err, tc.wantEchoed)
			}
			if got := res.Header.Get("X-Req-Length"); got != tc.wantFrame {
				t.Errorf("server saw framing %q, want %q", got, tc.wantFrame)
			}
			if res.Trailer.Get("X-Sum") != "42" || res.ContentLength != -1 || len(res.TransferEncoding) != 1 {
				t.Errorf("trailer %v, length %d, transfer-encoding %v", res.Trailer, res.ContentLength, res.TransferEncoding)
			}
		})
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests with bodies, want 1", n)
	}
}

func TestResponsesWithoutBodies(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "1234")
			if r.Method != "HEAD" {
				io.WriteString(w, strings.Repeat("x", 1234))
			}
		}
	}))
	c := newClient(t, Config{})
	for _, tc := range []struct {
		method, path string
		status       int
		length       int64
	}{{"HEAD", "/", 200, 1234}, {"GET", "/204", 204, 0}, {"GET", "/304", 304, 0}, {"HEAD", "/204", 204, -1}} {
		res := get(t, c, context.Background(), tc.method, "http://"+s.addr()+tc.path)
		if res.Body != http.NoBody || res.StatusCode != tc.status || res.ContentLength != tc.length {
			t.Errorf("%s %s: %d, length %d, body %T", tc.method, tc.path, res.StatusCode, res.ContentLength, res.Body)
		}
		res.Body.Close()
	}
	// Each went back to the pool at once: the next one used it.
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// A request that meets a connection closed as it was sent goes again on
// another when nothing of it can have been processed; a DELETE that was
// written does not (net/http retries only GET, HEAD, OPTIONS and TRACE, or
// a request with an Idempotency-Key).
func TestRequestOnAConnectionClosedUnderIt(t *testing.T) {
	c, addr, served := reuseThen(t, func(net.Conn, *http.Request) {}) // read and dropped, as an idle close crossing it
	res := get(t, c, context.Background(), "GET", "http://"+addr)
	readAll(t, res)
	if res.StatusCode != 200 || served.Load() != 2 {
		t.Fatalf("GET: %d, served %d times (want the dropped try, then the retry)", res.StatusCode, served.Load())
	}
	if c.Idle() != 1 {
		t.Fatalf("%d idle connections, want the retry's", c.Idle())
	}
	served.Store(0)
	req, _ := http.NewRequest("DELETE", "http://"+addr, nil)
	if _, err := c.RoundTrip(req); err == nil {
		t.Fatal("a DELETE the upstream read and dropped was sent again")
	}
	if served.Load() != 1 {
		t.Errorf("DELETE served %d times, want 1", served.Load())
	}
}

// An upstream that answers before the request's body is all sent (a
// refusal) is heard at once; the connection is not reused after it.
func TestEarlyResponseDuringUpload(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}))
	c := newClient(t, Config{})
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("first bytes")) // and then nothing more
	req, _ := http.NewRequest("POST", "http://"+s.addr(), pr)
	req.ContentLength = 1 << 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := c.RoundTrip(req)
		if err != nil {
			t.Errorf("RoundTrip: %v", err)
			return
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d", res.StatusCode)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the early answer waited for the rest of the body")
	}
	if c.Idle() != 0 {
		t.Errorf("a connection whose request was cut short went back to the pool")
	}
}

func TestContextCancelsWaitAndBody(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.(http.Flusher).Flush()
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	defer close(release)
	c := newClient(t, Config{})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr()+"/head", nil)
	if _, err := c.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a head past the deadline: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	res := get(t, c, ctx, "GET", "http://"+s.addr()+"/body")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := res.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("reading a body when the request is cancelled: %v", err)
	}
	res.Body.Close()
	if c.Idle() != 0 {
		t.Error("an interrupted connection went back to the pool")
	}
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		if r.Close {
			w.Header().Set("X-Client-Close", "1")
		}
	}))
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+s.addr()+"/close")
	res.Body.Close()
	if !res.Close || c.Idle() != 0 {
		t.Errorf("response Connection: close: Close %v, idle %d", res.Close, c.Idle())
	}
	req, _ := http.NewRequest("GET", "http://"+s.addr()+"/", nil)
	req.Close = true
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("X-Client-Close") != "1" || c.Idle() != 0 {
		t.Errorf("request Close: the server saw close %q, idle %d", res.Header.Get("X-Client-Close"), c.Idle())
	}
}

func TestHandsOverWhatItDoesNotDo(t *testing.T) {
	var handed []string
	c := newClient(t, Config{
		Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("dialed") },
		Fallback: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			handed = append(handed, r.Method)
			return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
		}),
	})
	for _, h := range []http.Header{{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, {"Expect": {"100-continue"}}} {
		req, _ := http.NewRequest("POST", "http://x", strings.NewReader("b"))
		req.Header = h
		if _, err := c.RoundTrip(req); err != nil {
			t.Errorf("%v: %v", h, err)
		}
	}
	req, _ := http.NewRequest("CONNECT", "http://x", nil)
	if _, err := c.RoundTrip(req); err != nil {
		t.Error(err)
	}
	if len(handed) != 3 {
		t.Errorf("handed over %v, want 3", handed)
	}
}

func TestPoolBoundsAndExpiry(t *testing.T) {
	block := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			<-block
		}
	}))
	c := newClient(t, Config{MaxIdleConnsPerHost: 2, IdleConnTimeout: 100 * time.Millisecond})
	res := make(chan *http.Response, 5)
	for range 5 {
		go func() {
			req, _ := http.NewRequest("GET", "http://"+s.addr()+"/wait", nil)
			r, err := c.RoundTrip(req)
			if err != nil {
				t.Error(err)
			}
			res <- r
		}()
	}
	eventually(t, "5 connections", 5*time.Second, func() bool { return s.accepted.Load() == 5 })
	close(block)
	for range 5 {
		if r := <-res; r != nil {
			r.Body.Close()
		}
	}
	if c.Idle() != 2 {
		t.Errorf("%d idle after 5 concurrent requests, want MaxIdleConnsPerHost 2", c.Idle())
	}
	eventually(t, "the server to see 3 closes", 5*time.Second, func() bool { return s.open.Load() == 2 })
	eventually(t, "idle connections to expire", 5*time.Second, func() bool { return c.Idle() == 0 && s.open.Load() == 0 })
}

func TestSkipsInformationalResponses(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx")
	})
	c := newClient(t, Config{})
	res := get(t, c, context.Background(), "GET", "http://"+addr)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 201 || string(b) != "x" || res.Header.Get("Link") != "" {
		t.Errorf("got %d %q %v", res.StatusCode, b, res.Header)
	}
}

func TestRefusals(t *testing.T) {
	big := strings.Repeat("v", 10<<10)
	addr := rawServer(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/smuggle":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		case "/bare-lf":
			io.WriteString(c, "HTTP/1.1 200 OK\nContent-Length: 0\n\n")
		case "/big-head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+big+"\r\nContent-Length: 0\r\n\r\n")
		case "/huge-head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat(big, 7)+"\r\n\r\n")
		case "/switch":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")
		case "/cut":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		}
		c.Close()
	})
	c := newClient(t, Config{})
	for path, want := range map[string]string{"/smuggle": "Content-Length with Transfer-Encoding", "/bare-lf": "line ending without CR",
		"/huge-head": ErrHeadTooLarge.Error(), "/switch": ErrUnexpectedSwitch.Error()} {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if _, err := c.RoundTrip(req); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
	res := get(t, c, context.Background(), "GET", "http://"+addr+"/big-head")
	if len(res.Header.Get("X-Big")) != len(big) {
		t.Errorf("a 10 KiB head (over the pooled buffer) was not read whole")
	}
	res = get(t, c, context.Background(), "GET", "http://"+addr+"/cut")
	if _, err := io.ReadAll(res.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a body cut short: %v", err)
	}
}

func TestDialErrorIsReturnedAsItIs(t *testing.T) {
	type dialErr struct{ error }
	c := newClient(t, Config{Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, &dialErr{errors.New("refused")}
	}})
	req, _ := http.NewRequest("GET", "http://10.0.0.1:8080", nil)
	var de *dialErr
	if _, err := c.RoundTrip(req); !errors.As(err, &de) {
		t.Errorf("dial failure: %v (%T)", err, err)
	}
}

// The client's body breaking off ends the exchange with its error, and
// the upstream is not left waiting for the rest.
func TestRequestBodyError(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	c := newClient(t, Config{})
	broken := errors.New("client went away")
	req, _ := http.NewRequest("PUT", "http://"+s.addr(), io.NopCloser(io.MultiReader(strings.NewReader("part"), &failReader{broken})))
	req.ContentLength = 100
	if _, err := c.RoundTrip(req); !errors.Is(err, broken) {
		t.Errorf("RoundTrip: %v, want the body's error", err)
	}
	eventually(t, "the upstream connection to close", 5*time.Second, func() bool { return s.open.Load() == 0 })
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

// Kept-alive connections in the pool hold no goroutine.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newClient(t, Config{MaxIdleConnsPerHost: 100})
	release := make(chan struct{})
	var started, done = make(chan struct{}, 50), make(chan struct{}, 50)
	before := runtime.NumGoroutine()
	for range 50 {
		go func() {
			defer func() { done <- struct{}{} }()
			req, _ := http.NewRequest("GET", "http://"+s.addr(), nil)
			res, err := c.RoundTrip(req)
			started <- struct{}{}
			if err != nil {
				t.Error(err)
				return
			}
			<-release
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}()
	}
	for range 50 {
		<-started
	}
	close(release)
	for range 50 {
		<-done
	}
	if c.Idle() != 50 {
		t.Fatalf("%d idle, want 50", c.Idle())
	}
	// The server's own goroutines (one per open connection) are the only
	// ones added, once the test's 50 have exited (a goroutine that sent on
	// done may not have ended yet: wait for the count to settle).
	extra := 0
	settled := func() bool {
		extra = runtime.NumGoroutine() - before - int(s.open.Load())
		return extra <= 2
	}
	deadline := time.Now().Add(5 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if extra > 2 {
		t.Errorf("%d goroutines beyond the server's for 50 idle connections", extra)
	}
}
