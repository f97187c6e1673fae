package h2server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2client"
)

func block(fields ...string) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return hb.Bytes()
}

func ourClient(t *testing.T, tune func(*h2client.Config)) *h2client.Client {
	cfg := h2client.Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	if tune != nil {
		tune(&cfg)
	}
	c := h2client.New(cfg)
	t.Cleanup(c.Close)
	return c
}

// statuses reads responses' heads until n have come, by stream.
func statuses(t *testing.T, nc net.Conn, fr *http2.Framer, n int) map[uint32]string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := map[uint32]string{}
	for len(got) < n {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("statuses %v, then %v", got, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.PseudoValue("status") != "" {
			got[h.StreamID] = h.PseudoValue("status")
		}
	}
	return got
}

// TestTrailersOfAnOversizedHeadAreDropped: trailers that follow a head
// answered 431 (a stream without a request) end it quietly; once they
// crashed the process.
func TestTrailersOfAnOversizedHeadAreDropped(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		func(c *Config) { c.MaxHeaderBytes = 1024 })
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	head := []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/"}
	for j := range 15 {
		head = append(head, fmt.Sprint("x-big", j), strings.Repeat("a", 100))
	}
	var buf bytes.Buffer
	w := http2.NewFramer(&buf, nil)
	_ = w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(head...)})
	_ = w.WriteData(1, false, []byte("body"))
	_ = w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: block("x-t", "v")})
	_, _ = nc.Write(buf.Bytes()) // all in one write: the 431 is not out yet when the trailers come
	writeRequest(t, fr, 3)
	if got := statuses(t, nc, fr, 2); got[1] != "431" || got[3] != "200" {
		t.Fatalf("statuses %v, want 431 then 200", got)
	}
}

// TestRequestBodyOfTheWrongLengthFails: a body shorter or longer than its
// Content-Length is an error for the handler, never a clean end.
func TestRequestBodyOfTheWrongLengthFails(t *testing.T) {
	for name, body := range map[string]string{"short": "abcd", "long": "abcdefghijklmnop"} {
		t.Run(name, func(t *testing.T) {
			got := make(chan error, 1)
			addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				got <- err
			}))
			nc, fr := rawClient(t, addr)
			defer nc.Close()
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(
				":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", "10")})
			_ = fr.WriteData(1, true, []byte(body))
			select {
			case err := <-got:
				if err == nil {
					t.Fatalf("a %d-byte body declared as 10 bytes read whole", len(body))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the handler never finished")
			}
		})
	}
}

// TestDeclaredTrailersReachTheHandlerWhenTheBodyEnds: the declared
// trailers are in r.Trailer once the body is read to its end, undeclared
// ones are not, and the connection's reader never writes the map the
// handler reads meanwhile (run with -race).
func TestDeclaredTrailersReachTheHandlerWhenTheBodyEnds(t *testing.T) {
	got := make(chan http.Header, 1)
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 1000 {
			for k := range r.Trailer { // what a client to the application does while the body arrives
				_ = k
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Clone()
	}))
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "trailer", "x-t")})
	_ = fr.WriteData(1, false, []byte("body"))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: block("x-t", "v", "x-u", "w")})
	select {
	case tr := <-got:
		if tr.Get("X-T") != "v" || tr.Get("X-U") != "" {
			t.Fatalf("trailers %v, want X-T only", tr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never finished")
	}
}

// TestFirstLargeUploadOnANewConnection: a body over the default 64 KiB
// window, sent first on a new connection, goes whole: the client takes the
// server's window from its SETTINGS, which come after the request was
// queued (it once waited for ever).
func TestFirstLargeUploadOnANewConnection(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	rt := ourClient(t, nil)
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(make([]byte, 200<<10)))
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
		if got != fmt.Sprint(200<<10) {
			t.Fatal(got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first 200 KiB POST on a new connection stalled")
	}
}

// TestBodiesLongerThanTheirLengthGiveTheirWindowBack: responses that run
// past their Content-Length fail, and their bytes go back to the
// connection's window: the connection keeps serving.
func TestBodiesLongerThanTheirLengthGiveTheirWindowBack(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/lie" {
			w.Header().Set("Content-Length", "1")
			_, _ = w.Write(bytes.Repeat([]byte("x"), 16000))
			return
		}
		_, _ = w.Write(bytes.Repeat([]byte("y"), 1000))
	}))
	rt := ourClient(t, func(c *h2client.Config) { c.ConnWindow, c.StreamWindow = 65535, 65535 })
	for range 5 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/lie", nil)
		if res, err := rt.RoundTrip(req); err == nil {
			if _, err := io.ReadAll(res.Body); err == nil {
				t.Fatal("a body longer than its Content-Length read whole")
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/ok", nil)
		res, err := rt.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(res.Body)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stalled: the window of the overlong bodies was not given back")
	}
}

// signalConn tells, on writing, that the server has begun a write.
type signalConn struct {
	net.Conn
	writing chan struct{}
}

func (c *signalConn) Write(p []byte) (int, error) {
	select {
	case c.writing <- struct{}{}:
	default:
	}
	return c.Conn.Write(p)
}

// TestGoAwayQueuedDuringAFlushIsWritten: a connection error that comes
// while the writer is still writing earlier frames (the client reads
// slowly) queues its GOAWAY behind them. The writer used to see, after
// that write, that the connection was to close and close it without
// taking the GOAWAY from the queue: the client got EOF after
// GoAwayTimeout and never its error (TestGoAwayIsNotLostToAReset failed
// about 1 time in 20 under -race). A pipe makes the order certain here:
// the server's write of its SETTINGS ack blocks until the client reads.
func TestGoAwayQueuedDuringAFlushIsWritten(t *testing.T) {
	srv := New(Config{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ConnWindow: 65535})
	t.Cleanup(srv.Close)
	client, server := net.Pipe()
	defer client.Close()
	sc := &signalConn{Conn: server, writing: make(chan struct{}, 1)}
	go func() { _ = srv.ServeConn(context.Background(), sc) }()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))

	if _, err := client.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(client, client)
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	<-sc.writing // the server's SETTINGS, read above
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	select { // the writer is writing the SETTINGS ack, which nobody reads yet
	case <-sc.writing:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not write its SETTINGS ack")
	}
	if err := fr.WriteData(3, false, []byte("x")); err != nil { // a stream never opened: PROTOCOL_ERROR
		t.Fatal(err)
	}
	// Read by the server only after it has queued its GOAWAY (it drains
	// what the client sends after a connection error).
	if err := fr.WritePing(false, [8]byte{}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
			}
			return
		}
	}
}
