package h2server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2client"
)

// counted counts the writes made on a server's connections.
type counted struct {
	net.Conn
	writes *atomic.Int64
}

func (c counted) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// start serves h with a Server on a loopback port.
func start(t *testing.T, h http.Handler, tune ...func(*Config)) (string, *Server, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Handler: h}
	for _, f := range tune {
		f(&cfg)
	}
	srv := New(cfg)
	var writes atomic.Int64
	var wg sync.WaitGroup
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = srv.ServeConn(context.Background(), counted{nc, &writes})
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String(), srv, &writes
}

// clients are the two clients a meshed server meets: a proxy of this
// version, and one of the last (net/http's Transport).
func clients(t *testing.T) map[string]http.RoundTripper {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DisableCompression: true}
	ours := h2client.New(h2client.Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}})
	t.Cleanup(func() { tr.CloseIdleConnections(); ours.Close() })
	return map[string]http.RoundTripper{"net/http": tr, "h2client": ours}
}

func do(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return res, string(b)
}

func TestAgainstBothClients(t *testing.T) {
	big := make([]byte, 10<<20)
	_, _ = rand.Read(big)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("Connection", "close") // not for HTTP/2: left out
		n, _ := io.Copy(w, r.Body)
		if v := r.Trailer.Get("X-Sum"); v != "" {
			w.Header().Set(http.TrailerPrefix+"X-Got-Sum", v)
		}
		w.Header().Set(http.TrailerPrefix+"X-Read", fmt.Sprint(n))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) })
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		_, _ = fmt.Sscan(r.PathValue("code"), &code)
		if code == 103 {
			w.Header().Set("Link", "</a.css>")
			w.WriteHeader(103)
			code = 200
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "x")
	})
	mux.HandleFunc("/grpc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			_, _ = fmt.Fprintf(w, "echo %s\n", sc.Text())
			w.(http.Flusher).Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	addr, _, _ := start(t, mux)
	base := "http://" + addr
	for name, rt := range clients(t) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			req.Header.Set("Cookie", "a=1; b=2")
			res, body := do(t, rt, req)
			if res.StatusCode != 200 || res.Header.Get("X-Method") != "GET" || res.Header.Get("X-Length") != "0" ||
				res.Header.Get("X-Cookie") != "a=1; b=2" || res.Header.Get("X-Host") != addr || body != "" {
				t.Errorf("GET: %d %v %q", res.StatusCode, res.Header, body)
			}
			if _, ok := res.Header["Connection"]; ok || res.Trailer.Get("X-Read") != "0" {
				t.Errorf("GET: header %v, trailers %v", res.Header, res.Trailer)
			}

			req, _ = http.NewRequest("POST", base+"/echo", bytes.NewReader(big))
			res, body = do(t, rt, req)
			if res.Header.Get("X-Length") != fmt.Sprint(len(big)) || body != string(big) || res.Trailer.Get("X-Read") != fmt.Sprint(len(big)) {
				t.Errorf("POST 10 MiB: length %s, echoed %d bytes, trailers %v", res.Header.Get("X-Length"), len(body), res.Trailer)
			}
			req, _ = http.NewRequest("GET", base+"/big", nil)
			if _, body = do(t, rt, req); body != string(big) {
				t.Errorf("GET 10 MiB: %d bytes", len(body))
			}

			pr, pw := io.Pipe()
			req, _ = http.NewRequest("POST", base+"/echo", pr)
			req.Trailer = http.Header{"X-Sum": nil}
			go func() {
				_, _ = io.WriteString(pw, "payload")
				req.Trailer.Set("X-Sum", "42")
				_ = pw.Close()
			}()
			if res, body = do(t, rt, req); body != "payload" || res.Trailer.Get("X-Got-Sum") != "42" || res.Header.Get("X-Length") != "-1" {
				t.Errorf("request trailers: %q %v %v", body, res.Header, res.Trailer)
			}

			pr, pw = io.Pipe()
			req, _ = http.NewRequest("POST", base+"/grpc", pr)
			res, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := res.Trailer["Grpc-Status"]; !ok {
				t.Errorf("declared trailers %v", res.Trailer)
			}
			rd := bufio.NewReader(res.Body)
			for i := range 10 {
				_, _ = fmt.Fprintf(pw, "line %d\n", i)
				if line, err := rd.ReadString('\n'); err != nil || line != fmt.Sprintf("echo line %d\n", i) {
					t.Fatalf("bidirectional round %d: %q, %v", i, line, err)
				}
			}
			_ = pw.Close()
			if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 || res.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("after the request's end: %q, %v, trailers %v", rest, err, res.Trailer)
			}

			for _, tc := range []struct {
				method string
				code   int
				want   int
				body   string
			}{{"GET", 204, 204, ""}, {"GET", 304, 304, ""}, {"HEAD", 200, 200, ""}, {"GET", 103, 200, "x"}, {"GET", 500, 500, "x"}} {
				req, _ := http.NewRequest(tc.method, fmt.Sprint(base, "/status/", tc.code), nil)
				if res, body := do(t, rt, req); res.StatusCode != tc.want || body != tc.body {
					t.Errorf("%s %d: got %d %q", tc.method, tc.code, res.StatusCode, body)
				}
			}

			req, _ = http.NewRequest("GET", base+"/panic", nil)
			if res, err := rt.RoundTrip(req); err == nil {
				_, err = io.ReadAll(res.Body)
				if err == nil {
					t.Errorf("a handler that panicked gave a whole response: %d", res.StatusCode)
				}
			}
			req, _ = http.NewRequest("GET", base+"/status/200", nil)
			if res, _ := do(t, rt, req); res.StatusCode != 200 {
				t.Errorf("after a panic: %d", res.StatusCode)
			}
		})
	}
}

// TestResponsesAreBatched: 64 responses ready at once leave in far fewer
// writes than 64, on one CPU as the sidecar runs.
func TestResponsesAreBatched(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var arrived atomic.Int64
	release := make(chan struct{})
	addr, _, writes := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			arrived.Add(1)
			<-release
		}
		_, _ = io.WriteString(w, "answer")
	}))
	rt := clients(t)["h2client"]
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	do(t, rt, req)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+addr+"/wait", nil)
			do(t, rt, req)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < 64 {
		if time.Now().After(deadline) {
			t.Fatal("the 64 requests did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	before := writes.Load()
	close(release)
	wg.Wait()
	n := writes.Load() - before
	t.Logf("64 responses in %d writes", n)
	if n > 16 {
		t.Fatalf("64 responses took %d writes, want at most 16", n)
	}
}

// TestShutdownLetsStreamsFinish: Shutdown sends GOAWAY; the request in
// flight finishes, and Shutdown returns once its connection closed.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	addr, srv, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	for name, rt := range clients(t) {
		t.Run(name, func(t *testing.T) {
			out := make(chan string, 1)
			go func() {
				req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
				_, body := do(t, rt, req)
				out <- body
			}()
			<-started
			shut := make(chan error, 1)
			go func() { shut <- srv.Shutdown(context.Background()) }()
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned (%v) with a stream in flight", err)
			case <-time.After(50 * time.Millisecond):
			}
			release <- struct{}{}
			if body := <-out; body != "finished" {
				t.Fatalf("the request in flight: %q", body)
			}
			if err := <-shut; err != nil {
				t.Fatal(err)
			}
			srv.mu.Lock()
			srv.shutdown = false // serve the next client
			srv.mu.Unlock()
		})
	}
}

// TestStreamsBeyondTheLimitAreRefused: a client that opens more streams
// than advertised on one connection gets them refused, and no more
// handlers run at once.
func TestStreamsBeyondTheLimitAreRefused(t *testing.T) {
	var running, peak atomic.Int64
	release := make(chan struct{})
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
	}), func(c *Config) { c.MaxConcurrentStreams = 10 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	for i := range uint32(30) {
		writeRequest(t, fr, 2*i+1)
	}
	refused := 0
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for refused < 20 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("%d streams refused, then %v", refused, err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && (rst.ErrCode == http2.ErrCodeRefusedStream || rst.ErrCode == http2.ErrCodeProtocol) {
			refused++
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if peak.Load() != 10 {
		t.Errorf("%d handlers at once, want the limit of 10", peak.Load())
	}
}

// rawClient opens a prior-knowledge HTTP/2 connection with a bare Framer.
func rawClient(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, bufio.NewReader(nc))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return nc, fr
}

// writeRequest writes a GET's HEADERS on stream id.
func writeRequest(t *testing.T, fr *http2.Framer, id uint32) {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
}

// TestOversizedHeadGets431 answers a head over MaxHeaderBytes without the
// handler, and the connection serves the next request. (A raw client: the
// clients of both proxies refuse to send such a head once they have the
// server's SETTINGS.)
func TestOversizedHeadGets431(t *testing.T) {
	var calls atomic.Int64
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }),
		func(c *Config) { c.MaxHeaderBytes = 4 << 10 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range 20 {
		_ = enc.WriteField(hpack.HeaderField{Name: fmt.Sprint("x-h", i), Value: strings.Repeat("a", 300)})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	writeRequest(t, fr, 3)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	status := map[uint32]string{}
	for len(status) < 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("statuses %v, then %v", status, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			status[h.StreamID] = h.PseudoValue("status")
		}
	}
	if status[1] != "431" || status[3] != "200" || calls.Load() != 1 {
		t.Fatalf("statuses %v (want 431 for the oversized head, 200 after), handler called %d times", status, calls.Load())
	}
}
