package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// badInputProxy is a proxy with small limits in front of a trivial upstream.
func badInputProxy(t *testing.T) *running {
	t.Helper()
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	return startProxy(t, Config{
		Outbound:          &SideConfig{Listen: "127.0.0.1:0", Upstream: up},
		MaxHeaderBytes:    4 << 10,
		ReadHeaderTimeout: 300 * time.Millisecond,
		DrainTimeout:      2 * time.Second,
	})
}

// rawExchange writes raw bytes and returns everything read until the proxy
// closes the connection (or 10 s pass).
func rawExchange(t *testing.T, addr string, send []byte, halfClose bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(send)
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	return string(got)
}

// TestBadHTTP1InputGetsProtocolErrorsAndIsCounted sends malformed requests,
// oversized headers, slowloris and cut-off requests, and half-closed
// connections; each gets its answer and is counted, and nothing leaks.
func TestBadHTTP1InputGetsProtocolErrorsAndIsCounted(t *testing.T) {
	leakCheck(t)
	p := badInputProxy(t)
	reset := func(partial string) func() string {
		return func() string {
			c, err := net.Dial("tcp", p.outbound())
			if err != nil {
				t.Fatal(err)
			}
			before := metricValue(scrape(t, p), "tcp_read_bytes_total", nil)
			c.Write([]byte(partial))
			eventually(t, "the proxy to read the partial request", 5*time.Second, func() bool {
				return metricValue(scrape(t, p), "tcp_read_bytes_total", nil) >= before+float64(len(partial))
			})
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			return ""
		}
	}
	send := func(data string, halfClose bool) func() string {
		return func() string { return rawExchange(t, p.outbound(), []byte(data), halfClose) }
	}
	tests := []struct {
		name   string
		do     func() string
		answer string // prefix of what the client reads; "" for nothing
		error  string // the protocol_error_total "error" label counted once
	}{
		{"malformed header line", send("GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", false), "HTTP/1.1 400 ", "400"},
		{"oversized headers", send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8<<10)+"\r\n\r\n", false), "HTTP/1.1 431 ", "431"},
		{"unsupported transfer coding", send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false), "HTTP/1.1 501 ", "501"},
		{"slowloris", send("GET / HTTP/1.1\r\nHost: x\r\n", false), "", "header_timeout"},
		{"half-close mid-headers", send("GET / HTTP/1.1\r\nHost: x\r\nAcc", true), "HTTP/1.1 400 ", "400"},
		{"reset mid-headers", reset("GET / HTTP/1.1\r\nHost: x\r\n"), "", "400"}, // answered, to nobody
		{"half-close mid-body", send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", true), "HTTP/1.1 400 ", "incomplete_body"},
		// A client that closes its side is taken as gone (its request is
		// cancelled upstream unless AllowHalfClose): 200 or 502 by who wins.
		{"half-close after a whole request", send("GET /half HTTP/1.1\r\nHost: x\r\n\r\n", true), "HTTP/1.1 ", ""},
		{"bad request after a good one", send("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost x\r\n\r\n", false), "HTTP/1.1 200 ", "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := scrape(t, p)
			start := time.Now()
			got := tt.do()
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the proxy held the connection for %s", took)
			}
			if !strings.HasPrefix(got, tt.answer) || tt.answer == "" && got != "" {
				t.Errorf("client read %q, want %q…", got, tt.answer)
			}
			eventually(t, "the connection to close", 5*time.Second, func() bool {
				return metricValue(scrape(t, p), "tcp_open_connections", nil) == 0
			})
			after := scrape(t, p)
			for _, kind := range []string{"400", "431", "501", "header_timeout", "incomplete_body"} {
				labels := map[string]string{"direction": "outbound", "protocol": "http1", "error": kind}
				delta := metricValue(after, "protocol_error_total", labels) - metricValue(before, "protocol_error_total", labels)
				want := 0.0
				if kind == tt.error {
					want = 1
				}
				if delta != want {
					t.Errorf("protocol_error_total{error=%q} rose by %v, want %v", kind, delta, want)
				}
			}
		})
	}
	p.stop(t)
}

// TestBadHTTP2InputGetsGoAwayOrResetAndIsCounted sends a frame on stream 0
// that only belongs on a stream (a connection error: GOAWAY), request
// headers without a :path (a stream error: RST_STREAM) and oversized headers
// (431).
func TestBadHTTP2InputGetsGoAwayOrResetAndIsCounted(t *testing.T) {
	leakCheck(t)
	p := badInputProxy(t)

	// Stream error: a request missing its :path pseudo-header.
	c, fr := h2Conn(t, p.outbound())
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
	enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "x"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	if f := readUntil(t, fr, func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }); f == nil {
		t.Error("no RST_STREAM for a request without :path")
	} else if rst := f.(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("RST_STREAM code %v, want PROTOCOL_ERROR", rst.ErrCode)
	}
	c.Close()

	// Connection error: DATA on stream 0.
	c, fr = h2Conn(t, p.outbound())
	fr.WriteData(0, false, []byte("nope"))
	if f := readUntil(t, fr, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }); f == nil {
		t.Error("no GOAWAY for DATA on stream 0")
	} else if ga := f.(*http2.GoAwayFrame); ga.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY code %v, want PROTOCOL_ERROR", ga.ErrCode)
	}
	c.Close()

	// Oversized headers: 431, like HTTP/1. (A single header value larger than
	// the whole limit is a COMPRESSION_ERROR for the connection instead.)
	c, fr = h2Conn(t, p.outbound())
	hb.Reset()
	enc = hpack.NewEncoder(&hb) // a new connection has a new compression context
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range 40 {
		enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-h%d", i), Value: strings.Repeat("a", 200)})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	var status string
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	if f := readUntil(t, fr, func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok }); f == nil {
		t.Error("no response to oversized headers")
	} else if dec.Write(f.(*http2.HeadersFrame).HeaderBlockFragment()); status != "431" {
		t.Errorf("oversized headers over h2: status %q, want 431", status)
	}
	c.Close()

	fams := scrape(t, p)
	if v := metricValue(fams, "protocol_error_total", map[string]string{"direction": "outbound", "protocol": "h2"}); v < 2 {
		t.Errorf("protocol_error_total{h2} = %v, want at least 2", v)
	}
	p.stop(t)
}

// TestManyHTTP2StreamsAreRefusedBeyondTheLimit: a client that ignores
// SETTINGS_MAX_CONCURRENT_STREAMS gets streams refused, not unbounded work.
func TestManyHTTP2StreamsAreRefusedBeyondTheLimit(t *testing.T) {
	leakCheck(t)
	block := make(chan struct{})
	var inflight, peak atomic.Int64
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-block
	}))
	const limit = 10
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, MaxConcurrentStreams: limit, DrainTimeout: time.Second})
	c, fr := h2Conn(t, p.outbound())
	for i := uint32(0); i < 50; i++ {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	}
	refused := 0
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.ErrCode == http2.ErrCodeRefusedStream || isGoAway(f) {
			refused++
		}
		if refused >= 40 || isGoAway(f) {
			break
		}
	}
	if refused == 0 {
		t.Error("none of 50 concurrent streams over a limit of 10 was refused")
	}
	// The upstream saw the streams that were let through, never more
	// than the limit at once.
	eventually(t, "the admitted streams to reach the upstream", 5*time.Second, func() bool { return inflight.Load() > 0 })
	if got := peak.Load(); got > limit {
		t.Errorf("the upstream had %d requests at once, over the limit of %d", got, limit)
	}
	close(block)
	c.Close()
	p.stop(t)
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

// h2Conn opens a prior-knowledge HTTP/2 connection and does the SETTINGS dance.
func h2Conn(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, bufio.NewReader(c))
	fr.AllowIllegalWrites = true
	fr.WriteSettings()
	return c, fr
}

// readUntil reads frames until match returns true (returning that frame),
// answering the server's SETTINGS, or nil when the connection ends.
func readUntil(t *testing.T, fr *http2.Framer, match func(http2.Frame) bool) http2.Frame {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			fr.WriteSettingsAck()
		}
		if match(f) {
			return f
		}
	}
}
