package h2server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
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
	addr, srv, _ := start(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
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
	}), WriteTimeout: time.Second})
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
