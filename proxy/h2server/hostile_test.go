package h2server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readUntilEnd reads frames until the connection ends, returning the
// GOAWAY it saw, if any.
func readUntilEnd(t *testing.T, nc net.Conn, fr *http2.Framer) *http2.GoAwayFrame {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var ga *http2.GoAwayFrame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection was not ended")
			}
			return ga
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			ga = &http2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode}
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestContinuationFloodIsCutOff: HEADERS without END_HEADERS and then an
// endless run of CONTINUATION frames ends the connection without growing
// memory (CVE-2023-45288).
func TestContinuationFloodIsCutOff(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		func(c *Config) { c.MaxHeaderBytes = 64 << 10 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	var hb bytes.Buffer
	_ = hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	before := heapInUse()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true})
	chunk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 200) // literal fields, 1 KB a frame
	sent := 0
	go func() {
		for ; sent < 100_000; sent++ {
			if fr.WriteContinuation(1, false, chunk) != nil {
				return
			}
		}
	}()
	readUntilEnd(t, nc, fr)
	if after := heapInUse(); after > before+32<<20 {
		t.Errorf("heap grew from %d to %d KiB during the flood", before>>10, after>>10)
	}
}

// TestPingFloodWithoutReadingIsCutOff: a client that sends PINGs and never
// reads the answers cannot make the server queue them without bound.
func TestPingFloodWithoutReadingIsCutOff(t *testing.T) {
	// Writes never time out here: only the cap on queued answers can end it.
	addr, srv, _ := start(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		func(c *Config) { c.WriteTimeout = time.Hour })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	done := make(chan int)
	go func() {
		i := 0
		for ; i < 2_000_000; i++ {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				break
			}
		}
		done <- i
	}()
	select {
	case n := <-done:
		if n == 2_000_000 {
			t.Fatal("2,000,000 PINGs accepted from a client that reads nothing")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the flood was not cut off")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.mu.Lock()
		n := len(srv.conns)
		srv.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flooding connection is still served")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDataBeyondTheWindowEndsTheConnection: DATA past the connection's
// window is a FLOW_CONTROL_ERROR.
func TestDataBeyondTheWindowEndsTheConnection(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }),
		func(c *Config) { c.StreamWindow, c.ConnWindow = 1<<20, 1<<20 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	go func() {
		chunk := make([]byte, 16384)
		for range (1<<20)/16384 + 2 {
			if fr.WriteData(1, false, chunk) != nil {
				return
			}
		}
	}()
	ga := readUntilEnd(t, nc, fr)
	if ga == nil || ga.ErrCode != http2.ErrCodeFlowControl {
		t.Fatalf("GOAWAY %+v, want FLOW_CONTROL_ERROR", ga)
	}
}

// TestClientThatNeverReadsIsClosed: the server's writes to a client that
// reads nothing time out, and the connection and its handlers end.
func TestClientThatNeverReadsIsClosed(t *testing.T) {
	big := make([]byte, 1<<20)
	finished := make(chan struct{})
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		for r.Context().Err() == nil {
			if _, err := w.Write(big); err != nil {
				return
			}
		}
	}), func(c *Config) { c.WriteTimeout = 500 * time.Millisecond })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	// A huge window, so only the socket holds the server back.
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
	writeRequest(t, fr, 1)
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler writing to a client that reads nothing never ended")
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}

// FuzzServerFrames feeds arbitrary frames after a valid preface: the
// server must neither panic nor hang, and must end every goroutine once
// the client goes away.
func FuzzServerFrames(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, fl := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}, {"content-length", "3"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: fl[0], Value: fl[1]})
	}
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	_ = fr.WriteSettings()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, true, []byte("abc"))
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	_ = fr.WriteWindowUpdate(0, 1000)
	_ = fr.WritePing(false, [8]byte{1})
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0})
	srv := New(Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
		w.Header().Set(http.TrailerPrefix+"X-T", "1")
	}), WriteTimeout: time.Second, GoAwayTimeout: 10 * time.Millisecond}) // each input's close waits it
	f.Fuzz(func(t *testing.T, frames []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			_ = srv.ServeConn(context.Background(), server)
			close(done)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = client.Write([]byte(preface))
		_, _ = client.Write(frames)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
	})
}

// TestDataBeyondAStreamsWindowResetsOnlyThatStream: DATA past a stream's
// window (within the connection's) resets that stream with
// FLOW_CONTROL_ERROR; the connection serves the next request.
func TestDataBeyondAStreamsWindowResetsOnlyThatStream(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			<-r.Context().Done()
		}
	}), func(c *Config) { c.StreamWindow, c.ConnWindow = 64<<10, 1<<20 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/")})
	chunk := make([]byte, 16384)
	for range 5 { // 80 KiB into a 64 KiB window
		_ = fr.WriteData(1, false, chunk)
	}
	writeRequest(t, fr, 3)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var rst *http2.RSTStreamFrame
	status := ""
	for rst == nil || status == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("RST_STREAM %v, status of the next request %q, then %v", rst, status, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				rst = &http2.RSTStreamFrame{ErrCode: f.ErrCode}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 3 {
				status = f.PseudoValue("status")
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v for a stream's window", f.ErrCode)
		}
	}
	if rst.ErrCode != http2.ErrCodeFlowControl || status != "200" {
		t.Fatalf("RST_STREAM %v (want FLOW_CONTROL_ERROR), next request %s", rst.ErrCode, status)
	}
}

// TestUnreadBodiesGiveTheirWindowBack: handlers that answer without
// reading their request's body do not use up the connection's window:
// a body read whole still passes after many that were not.
func TestUnreadBodiesGiveTheirWindowBack(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			n, _ := io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
		}
	}), func(c *Config) { c.StreamWindow, c.ConnWindow = 64<<10, 64<<10 })
	rt := ourClient(t, nil)
	for range 20 {
		req, _ := http.NewRequest("POST", "http://"+addr+"/ignore", bytes.NewReader(make([]byte, 60<<10)))
		if res, err := rt.RoundTrip(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
	}
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+addr+"/read", bytes.NewReader(make([]byte, 60<<10)))
		res, err := rt.RoundTrip(req)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		done <- string(b)
	}()
	select {
	case got := <-done:
		if got != strconv.Itoa(60<<10) {
			t.Fatalf("the body read whole: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's window was used up by bodies nobody read")
	}
}

// TestStreamsOpenedAfterGoAwayAreRefused: during Shutdown, a stream the
// client opens after the server's GOAWAY is refused (REFUSED_STREAM: safe
// to send elsewhere), while the one in flight finishes.
func TestStreamsOpenedAfterGoAwayAreRefused(t *testing.T) {
	release := make(chan struct{})
	addr, srv, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	writeRequest(t, fr, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.mu.Lock()
		var open int
		for c := range srv.conns {
			c.mu.Lock()
			open += len(c.streams)
			c.mu.Unlock()
		}
		srv.mu.Unlock()
		if open == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	go func() { _ = srv.Shutdown(context.Background()) }()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.LastStreamID != 1 {
				t.Fatalf("GOAWAY's last stream %d, want 1", ga.LastStreamID)
			}
			break
		}
	}
	writeRequest(t, fr, 3)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 3 {
			if rst.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("stream after GOAWAY reset with %v, want REFUSED_STREAM", rst.ErrCode)
			}
			break
		}
	}
	close(release)
	if got := statuses(t, nc, fr, 1); got[1] != "200" {
		t.Fatalf("the request in flight: %v", got)
	}
}

// TestCloseWhileAConnectionStarts: Close may meet a connection still
// starting (its idle timer included; run with -race).
func TestCloseWhileAConnectionStarts(t *testing.T) {
	srv := New(Config{Handler: http.NotFoundHandler(), IdleTimeout: time.Minute})
	client, server := net.Pipe()
	defer client.Close()
	go func() { _, _ = client.Write([]byte(http2.ClientPreface)); _, _ = io.Copy(io.Discard, client) }()
	done := make(chan struct{})
	go func() { _ = srv.ServeConn(context.Background(), server); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.mu.Lock()
		n := len(srv.conns)
		srv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection was not taken")
		}
		time.Sleep(time.Millisecond)
	}
	srv.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after Close")
	}
}
