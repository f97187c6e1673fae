package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Deadline bounds one input's exchange: the proxy must have answered
// or closed the connection within it.
const h2Deadline = 10 * time.Second

// h2GoroutineSlack is how many goroutines above the first liveness
// check's count the proxy may keep between inputs (pooled upstream
// connections, connections still closing): the upstream transport keeps up
// to 64 idle connections for 90 s, about 3 goroutines each with the
// in-process backend's, so the slack is above 3 × 64.
const h2GoroutineSlack = 250

// h2Sentinel is the payload of the PING sent after the input: its ACK
// says the proxy has read everything before it.
var h2Sentinel = [8]byte{'m', 'e', 's', 'h', 'f', 'u', 'z', 'z'}

// FuzzHTTP2Frames throws arbitrary bytes at a running proxy's outbound
// listener (the application's side) as HTTP/2 frames after the h2c
// client preface, which the listener detects as prior-knowledge HTTP/2.
// Whatever the frames, the proxy
//
//   - never panics: a panic in a handler, which net/http recovers and
//     logs, fails the run (one elsewhere crashes the fuzz worker);
//   - answers a PING sent after whole frames, or closes the connection,
//     and closes it once the client has half-closed, within h2Deadline;
//   - then still serves a fresh HTTP/2 request correctly, on a new
//     connection;
//   - keeps no more than h2GoroutineSlack goroutines above its count
//     after the first request, input after input.
//
// One proxy and one upstream serve all the inputs of a run.
func FuzzHTTP2Frames(f *testing.F) {
	for _, seed := range h2Seeds(f) {
		f.Add(seed)
	}
	up := backend(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok "+r.Method+" "+r.URL.Path)
	}))
	panics := &panicCatcher{}
	p := startProxy(f, Config{
		Outbound:          &SideConfig{Listen: "127.0.0.1:0", Upstream: up},
		ReadHeaderTimeout: time.Second,
		DetectTimeout:     100 * time.Millisecond,
		Log:               slog.New(panics),
	})
	addr := p.outbound()
	h2Live(f, addr, 0)
	baseline := runtime.NumGoroutine()
	n := 0
	f.Fuzz(func(t *testing.T, in []byte) {
		h2Exchange(t, addr, in)
		if msg := panics.take(); msg != "" {
			t.Fatalf("the proxy panicked on %s: %s", h2Show(in), msg)
		}
		n++
		h2Live(t, addr, n)
		if msg := panics.take(); msg != "" {
			t.Fatalf("the proxy panicked on a valid request after %s: %s", h2Show(in), msg)
		}
		limit := baseline + h2GoroutineSlack
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > limit; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines after %d inputs, the last %s; at most %d (baseline %d) wanted\n%s",
					runtime.NumGoroutine(), n, h2Show(in), limit, baseline, buf[:runtime.Stack(buf, true)])
			}
		}
	})
}

// h2Exchange sends the preface, in and (when in is whole frames) a PING
// on a new connection, and reads frames until the PING's ACK, a GOAWAY or
// the end of the connection (half-closing first when in is not whole
// frames: the proxy may be waiting for the rest of one). After the ACK it
// half-closes and reads to the end. It fails the test when the proxy does
// not answer or close within h2Deadline.
func h2Exchange(t *testing.T, addr string, in []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the proxy stopped accepting: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(h2Deadline))
	whole := h2WholeFrames(in)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		var out bytes.Buffer
		out.WriteString(http2.ClientPreface)
		out.Write(in)
		if whole {
			http2.NewFramer(&out, nil).WritePing(false, h2Sentinel)
		} else {
			defer c.(*net.TCPConn).CloseWrite()
		}
		c.Write(out.Bytes()) // fails when the proxy closes first: fine
	}()
	defer func() { <-wrote }()
	fr := http2.NewFramer(io.Discard, c)
	fr.SetMaxReadFrameSize(1 << 24)
	for {
		frame, err := fr.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("no PING ACK, GOAWAY or end of the connection within %s after %s (whole frames: %v)", h2Deadline, h2Show(in), whole)
		}
		if err != nil {
			break // the end, or a frame this reader cannot take: drain
		}
		if _, ok := frame.(*http2.GoAwayFrame); ok {
			return // the proxy is done with the connection
		}
		if ping, ok := frame.(*http2.PingFrame); whole && ok && ping.IsAck() && ping.Data == h2Sentinel {
			<-wrote
			c.(*net.TCPConn).CloseWrite()
			break
		}
	}
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection still open %s after %s and a half-close", h2Deadline, h2Show(in))
	}
}

// h2Live sends a valid GET over a new prior-knowledge HTTP/2 connection
// and checks the upstream's answer comes back whole.
func h2Live(t testing.TB, addr string, n int) {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // prior knowledge, nothing else
	tr := &http.Transport{Protocols: &protocols}
	defer tr.CloseIdleConnections() // a new connection each time
	cc := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), h2Deadline)
	defer cancel()
	path := fmt.Sprintf("/live/%d", n)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	req.Host = "fuzz.example"
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatalf("the proxy no longer serves HTTP/2 (after %d inputs): %v", n, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if want := "ok GET " + path; err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != want {
		t.Fatalf("after %d inputs: %s %d %q, %v; want HTTP/2.0 200 %q", n, resp.Proto, resp.StatusCode, body, err, want)
	}
}

// h2WholeFrames reports whether b is a sequence of whole frames (by their
// headers' lengths), so that a frame written after it is read as one.
func h2WholeFrames(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 9 {
			return false
		}
		n := 9 + (int(b[0])<<16 | int(b[1])<<8 | int(b[2]))
		if len(b) < n {
			return false
		}
		b = b[n:]
	}
	return true
}

// h2Show quotes an input for a failure message, cut at 200 bytes.
func h2Show(in []byte) string {
	if len(in) > 200 {
		return fmt.Sprintf("%q… (%d bytes)", in[:200], len(in))
	}
	return fmt.Sprintf("%q", in)
}

// h2Seeds are well-formed and ill-formed frame sequences, each after the
// client preface: a valid GET, a POST with a body, HEADERS and
// CONTINUATION, a RST_STREAM flood, WINDOW_UPDATEs of 0, SETTINGS with
// bad values, a PING flood, and more.
func h2Seeds(tb testing.TB) [][]byte {
	tb.Helper()
	block := func(fields ...string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return b.Bytes()
	}
	get := func(path string) []byte {
		return block(":method", "GET", ":scheme", "http", ":authority", "fuzz.example", ":path", path)
	}
	seq := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		write(fr)
		return b.Bytes()
	}
	check := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	headers := func(fr *http2.Framer, stream uint32, hb []byte, endStream bool) {
		check(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: hb, EndHeaders: true, EndStream: endStream}))
	}
	return [][]byte{
		// A valid GET.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 1, get("/a"), true)
		}),
		// A POST with a body, then a GOAWAY.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
			headers(fr, 1, block(":method", "POST", ":scheme", "http", ":authority", "fuzz.example", ":path", "/p", "content-length", "5"), false)
			check(fr.WriteData(1, true, []byte("hello")))
			check(fr.WriteGoAway(1, http2.ErrCodeNo, nil))
		}),
		// HEADERS and CONTINUATIONs.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			hb := block(":method", "GET", ":scheme", "http", ":authority", "fuzz.example", ":path", "/c", "x-long", strings.Repeat("v", 300))
			check(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:10], EndStream: true}))
			check(fr.WriteContinuation(1, false, hb[10:100]))
			check(fr.WriteContinuation(1, true, hb[100:]))
		}),
		// CONTINUATION without end, then something else: a protocol error.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			hb := get("/c")
			check(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:3], EndStream: true}))
			check(fr.WriteContinuation(1, false, hb[3:]))
			check(fr.WritePing(false, [8]byte{}))
		}),
		// A RST_STREAM flood: streams cancelled as soon as opened.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			for i := range uint32(300) {
				headers(fr, 2*i+1, get("/r"), true)
				check(fr.WriteRSTStream(2*i+1, http2.ErrCodeCancel))
			}
		}),
		// WINDOW_UPDATEs of 0, on the connection and on a stream.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 1, block(":method", "POST", ":scheme", "http", ":authority", "fuzz.example", ":path", "/w"), false)
			check(fr.WriteWindowUpdate(1, 0))
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			check(fr.WriteWindowUpdate(0, 0))
		}),
		// A window beyond 2^31-1.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			check(fr.WriteWindowUpdate(0, 1<<31-1))
			check(fr.WriteWindowUpdate(0, 1<<31-1))
		}),
		// SETTINGS with bad values.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}))
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2}))
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100}))
			headers(fr, 1, get("/s"), true)
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1<<32 - 1}, http2.Setting{ID: 0xff, Val: 7},
				http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0}))
			headers(fr, 1, get("/s"), true)
		}),
		// A PING flood.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			for i := range uint64(2000) {
				var data [8]byte
				binary.BigEndian.PutUint64(data[:], i)
				check(fr.WritePing(false, data))
			}
		}),
		// Streams out of order, on an even ID, DATA on stream 0, a
		// PRIORITY on itself.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 5, get("/5"), true)
			headers(fr, 3, get("/3"), true)
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 2, get("/2"), true)
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			check(fr.WriteData(0, true, []byte("x")))
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			check(fr.WritePriority(1, http2.PriorityParam{StreamDep: 1, Weight: 7}))
			headers(fr, 1, get("/p"), true)
		}),
		// Trailers, and a body longer than its content-length.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 1, block(":method", "POST", ":scheme", "http", ":authority", "fuzz.example", ":path", "/t", "content-length", "1"), false)
			check(fr.WriteData(1, false, []byte("toolong")))
			headers(fr, 1, block("x-trailer", "1"), true)
		}),
		// Bad header blocks: an invalid hpack index, an uppercase name.
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 1, []byte{0xff, 0xff, 0xff, 0x7f}, true)
		}),
		seq(func(fr *http2.Framer) {
			check(fr.WriteSettings())
			headers(fr, 1, append(get("/u"), block("X-Upper", "1")...), true)
		}),
		// A frame longer than the proxy reads, and a truncated one.
		append(seq(func(fr *http2.Framer) { check(fr.WriteSettings()) }), 0x20, 0, 0, 0, 0, 0, 0, 0, 1),
		seq(func(fr *http2.Framer) { check(fr.WriteSettings()); headers(fr, 1, get("/x"), true) })[:20],
		{},
	}
}
