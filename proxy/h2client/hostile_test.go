package h2client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawServer accepts connections on a loopback port and hands each, after
// the client's preface and with the server's SETTINGS sent, to script.
func rawServer(t *testing.T, script func(t *testing.T, fr *http2.Framer, nc net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				buf := make([]byte, len(preface))
				if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != preface {
					return
				}
				fr := http2.NewFramer(nc, nc)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				if fr.WriteSettings() != nil {
					return
				}
				script(t, fr, nc)
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// nextHeaders reads frames until a request's HEADERS and returns its stream.
func nextHeaders(fr *http2.Framer) (uint32, error) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, err
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			return h.StreamID, nil
		}
	}
}

func writeHead(fr *http2.Framer, id uint32, end bool, fields ...string) error {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndStream: end, EndHeaders: true})
}

// TestRequestsAboveGoAwayAreSentAgain: a server that answers a request
// with GOAWAY(last stream 0) did not process it; a request without a body
// goes out again on a new connection, and succeeds there.
func TestRequestsAboveGoAwayAreSentAgain(t *testing.T) {
	var conns atomic.Int64
	addr, accepted := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		id, err := nextHeaders(fr)
		if err != nil {
			return
		}
		if conns.Add(1)%2 == 1 { // the first, third, …
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			_, _ = io.Copy(io.Discard, nc)
			return
		}
		_ = writeHead(fr, id, true, ":status", "204")
		_, _ = io.Copy(io.Discard, nc)
	})
	c := client(t, nil)
	res, _ := get(t, c, "GET", "http://"+addr+"/", nil)
	if res.StatusCode != 204 || accepted.Load() != 2 {
		t.Fatalf("status %d after %d connections, want 204 after 2", res.StatusCode, accepted.Load())
	}

	// With a body, it is the caller's to send again: the error says so.
	c2 := client(t, nil)
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("body"))
	if _, err := c2.RoundTrip(req); !errors.Is(err, ErrUnprocessed) {
		t.Fatalf("POST above GOAWAY: %v, want ErrUnprocessed", err)
	}
}

// TestDataBeyondTheWindowIsRefused: a server that sends more than the
// stream's window gets RST_STREAM(FLOW_CONTROL_ERROR), and its reader an
// error; the bytes held meanwhile never exceed the window.
func TestDataBeyondTheWindowIsRefused(t *testing.T) {
	const window = 64 << 10
	got := make(chan http2.ErrCode, 1)
	addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		id, err := nextHeaders(fr)
		if err != nil {
			return
		}
		_ = writeHead(fr, id, false, ":status", "200")
		chunk := make([]byte, 16384)
		for range window/len(chunk) + 1 {
			if fr.WriteData(id, false, chunk) != nil {
				return
			}
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok {
				got <- r.ErrCode
				return
			}
		}
	})
	c := client(t, nil, func(c *Config) { c.StreamWindow = window })
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-got:
		if code != http2.ErrCodeFlowControl {
			t.Fatalf("RST_STREAM %v, want FLOW_CONTROL_ERROR", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no RST_STREAM for DATA beyond the window")
	}
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("the body read whole past a flow-control violation")
	}
}

// TestControlFloodWithoutReadingIsCutOff: a server that sends PINGs and
// never reads the answers cannot make the client queue them without bound.
func TestControlFloodWithoutReadingIsCutOff(t *testing.T) {
	addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		if _, err := nextHeaders(fr); err != nil {
			return
		}
		for i := uint64(0); i < 1_000_000; i++ {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
	})
	c := client(t, nil, func(c *Config) { c.WriteTimeout = time.Hour })
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(req)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "control frames") {
			t.Fatalf("RoundTrip: %v, want the connection cut off for its control frames", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a PING flood from a server that does not read kept the connection")
	}
}

// TestOversizedResponseHeadFails: a head over MaxHeaderListSize fails its
// request, and the connection serves the next.
func TestOversizedResponseHeadFails(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("X-Big", strings.Repeat("b", 100<<10))
		}
	}))
	c := client(t, nil, func(c *Config) { c.MaxHeaderListSize = 64 << 10 })
	req, _ := http.NewRequest("GET", "http://"+addr+"/big", nil)
	if res, err := c.RoundTrip(req); err == nil {
		t.Fatalf("a 100 KiB head read whole: %d", res.StatusCode)
	}
	// (The block is over twice what the client advertised: x/net's Framer
	// ends the connection for that, as net/http's client does.)
	if res, _ := get(t, c, "GET", "http://"+addr+"/small", nil); res.StatusCode != 200 {
		t.Fatalf("next request: %d", res.StatusCode)
	}
}

// TestWritesAreBatched: 64 requests started at once on one connection go
// out in far fewer writes than 64, on one CPU as the sidecar runs.
func TestWritesAreBatched(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	release := make(chan struct{})
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	var n counter
	c := client(t, &n)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	close(release)
	if res, err := c.RoundTrip(req); err != nil {
		t.Fatal(err)
	} else {
		_ = res.Body.Close()
	}
	release = make(chan struct{})
	before := n.writes.Load()
	done := make(chan error, 64)
	for range 64 {
		go func() {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			res, err := c.RoundTrip(req)
			if err == nil {
				_ = res.Body.Close()
			}
			done <- err
		}()
	}
	eventually(t, "64 streams open", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, list := range c.conns {
			for _, cn := range list {
				cn.mu.Lock()
				open := cn.open
				cn.mu.Unlock()
				return open == 64
			}
		}
		return false
	})
	writes := n.writes.Load() - before
	close(release)
	for range 64 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("64 request heads in %d writes", writes)
	if writes > 16 {
		t.Fatalf("64 request heads took %d writes, want at most 16", writes)
	}
}

// TestNoGoroutinePerRequest: 200 requests without a body in flight cost no
// goroutine in the client beyond its reader and writer per connection.
func TestNoGoroutinePerRequest(t *testing.T) {
	release := make(chan struct{})
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	var n counter
	c := client(t, &n)
	done := make(chan error, 200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 200 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
			res, err := c.RoundTrip(req)
			if err == nil {
				_ = res.Body.Close()
			}
			done <- err
		}()
	}
	count := func() int {
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		inClient := 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			// Goroutines the client started (callers are the test's).
			if strings.Contains(g, "created by github.com/meshctl/meshctl/proxy/h2client.") &&
				!strings.Contains(g, "created by github.com/meshctl/meshctl/proxy/h2client.Test") &&
				!strings.Contains(g, "created by github.com/meshctl/meshctl/proxy/h2client.serve") {
				inClient++
			}
		}
		return inClient
	}
	eventually(t, "200 requests at the server", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		open := 0
		for _, list := range c.conns {
			for _, cn := range list {
				cn.mu.Lock()
				open += cn.open
				cn.mu.Unlock()
			}
		}
		return open == 200
	})
	if got, want := count(), 2*int(n.dials.Load()); got != want {
		t.Errorf("%d goroutines in the client for %d connections, want %d", got, n.dials.Load(), want)
	}
	close(release)
	for range 200 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestGoAwayLetsStreamsInFlightFinish: a server shutting down lets the
// request in flight finish; the connection then closes, and the next
// request dials anew.
func TestGoAwayLetsStreamsInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	addr, srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	var n counter
	c := client(t, &n)
	type result struct {
		body string
		err  error
	}
	out := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		res, err := c.RoundTrip(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		out <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	eventually(t, "the client to take the GOAWAY", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.conns) == 0
	})
	close(release)
	if r := <-out; r.err != nil || r.body != "finished" {
		t.Fatalf("the request in flight: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// FuzzServerFrames answers a request with arbitrary frames after a valid
// SETTINGS: the client must neither panic nor hang past the request's
// deadline.
func FuzzServerFrames(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, fl := range [][2]string{{":status", "200"}, {"content-length", "3"}, {"trailer", "x-t"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: fl[0], Value: fl[1]})
	}
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, false, []byte("abc"))
	hb.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "x-t", Value: "1"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	_ = fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, frames []byte) {
		c := New(Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				go func() { _, _ = io.Copy(io.Discard, server) }()
				sfr := http2.NewFramer(server, nil)
				if sfr.WriteSettings() != nil {
					return
				}
				_, _ = server.Write(frames)
			}()
			return client, nil
		}, WriteTimeout: time.Second})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fuzz/", nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if res, err := c.RoundTrip(req); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the request outlived its deadline")
		}
	})
}

// TestRefusedStreamsAreSentAgain: a stream the server refuses
// (REFUSED_STREAM: not processed) is sent again when it has no body.
func TestRefusedStreamsAreSentAgain(t *testing.T) {
	var heads atomic.Int64
	addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		for {
			id, err := nextHeaders(fr)
			if err != nil {
				return
			}
			if heads.Add(1) == 1 {
				_ = fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
				continue
			}
			_ = writeHead(fr, id, true, ":status", "204")
		}
	})
	c := client(t, nil)
	if res, _ := get(t, c, "GET", "http://"+addr+"/", nil); res.StatusCode != 204 || heads.Load() != 2 {
		t.Fatalf("status %d after %d heads, want 204 after 2", res.StatusCode, heads.Load())
	}
}

// TestBodiesOfTheWrongLengthFail: a request body that does not match its
// ContentLength fails the request, and a response body shorter than its
// Content-Length fails its reader.
func TestBodiesOfTheWrongLengthFail(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abcd")
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	c := client(t, nil)
	for _, body := range []string{"abcd", "abcdefghijklmnop"} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(body))
		req.ContentLength = 10
		res, err := c.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(res.Body)
		}
		if err == nil {
			t.Errorf("a %d-byte body sent as 10 bytes: no error", len(body))
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/short", nil)
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(res.Body); err == nil {
		t.Fatalf("a response of %q under a Content-Length of 10 read whole", b)
	}
}

// TestBodyLongerThanItsLengthIsNotSent: a request body that runs past its
// ContentLength is cut off before the excess goes out, whatever the server
// would make of it.
func TestBodyLongerThanItsLengthIsNotSent(t *testing.T) {
	got := make(chan int, 1)
	seen := make(chan struct{})
	addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		if _, err := nextHeaders(fr); err != nil {
			return
		}
		close(seen)
		n := 0
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				got <- -1
				return
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				n += len(f.Data())
				if f.StreamEnded() {
					got <- n
					return
				}
			case *http2.RSTStreamFrame:
				got <- n
				return
			}
		}
	})
	c := client(t, nil)
	// The body comes once the head is out, so the stream has a number to
	// reset.
	body := io.MultiReader(readerFunc(func(p []byte) (int, error) { <-seen; return 0, io.EOF }), strings.NewReader("abcdefghijklmnop"))
	req, _ := http.NewRequest("POST", "http://"+addr+"/", body)
	req.ContentLength = 10
	if res, err := c.RoundTrip(req); err == nil {
		_ = res.Body.Close()
	}
	select {
	case n := <-got:
		if n < 0 || n > 10 {
			t.Fatalf("the server received %d bytes of a body declared as 10", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream neither ended nor was reset")
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
