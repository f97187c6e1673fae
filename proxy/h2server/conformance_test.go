package h2server

import (
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bothServers are net/http's h2c server (what applications' prior-knowledge
// connections met before stop 35) and ours, each serving h: the tests here
// hold ours to net/http's behaviour.
func bothServers(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	ours, _, _ := start(t, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: h, Protocols: &p}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return map[string]string{"h2server": ours, "net/http": ln.Addr().String()}
}

// headOrReset reads frames until stream id gets a head (its :status) or a
// RST_STREAM ("RST_STREAM <code>"), or the connection ends ("GOAWAY",
// "EOF"); "" when nothing comes within wait.
func headOrReset(t *testing.T, nc net.Conn, fr *http2.Framer, id uint32, wait time.Duration) string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	defer nc.SetReadDeadline(time.Time{})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return ""
			}
			return "EOF"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				return f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		}
	}
}

// TestExpectContinueAsAList: a client that sends Expect: 100-continue
// as two fields (or as a list) waits for 100 (Continue) like any other.
// Both servers recognise the token in every field value, send 100 at the
// first read and take the field out (once only a lone field was: the
// client never got its 100 and Expect went on upstream).
func TestExpectContinueAsAList(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"two fields", []string{"expect", "100-continue", "expect", "100-continue"}},
		{"a list", []string{"expect", "100-continue, 100-continue"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan []string, 4)
			servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header["Expect"]
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			for name, addr := range servers {
				t.Run(name, func(t *testing.T) {
					nc, fr := rawClient(t, addr)
					defer nc.Close()
					fields := append([]string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/"}, tc.fields...)
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(fields...)}); err != nil {
						t.Fatal(err)
					}
					if got := headOrReset(t, nc, fr, 1, 2*time.Second); got != "100" {
						t.Errorf("first answer %q before the body, want 100 (Continue)", got)
					}
					select {
					case vv := <-seen:
						if len(vv) > 0 {
							t.Errorf("the handler saw Expect %q (it would be forwarded)", vv)
						}
					case <-time.After(2 * time.Second):
						t.Fatal("handler not called")
					}
				})
			}
		})
	}
}

// TestExpectWithEndStreamIsTakenOut: a request that asks for 100
// (Continue) and has no body: the Expect field is taken out all the same,
// as net/http's server does (it would otherwise be forwarded).
func TestExpectWithEndStreamIsTakenOut(t *testing.T) {
	seen := make(chan []string, 4)
	servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header["Expect"]
	}))
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			nc, fr := rawClient(t, addr)
			defer nc.Close()
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: block(
				":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "expect", "100-continue")}); err != nil {
				t.Fatal(err)
			}
			if got := headOrReset(t, nc, fr, 1, 2*time.Second); got != "200" {
				t.Fatalf("answer %q, want 200", got)
			}
			if vv := <-seen; len(vv) > 0 {
				t.Errorf("the handler saw Expect %q", vv)
			}
		})
	}
}

// TestMalformedRequestsAreRefused: requests RFC 9113 calls malformed are
// refused with RST_STREAM PROTOCOL_ERROR, as net/http's h2c server does,
// and never reach the handler.
func TestMalformedRequestsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		// RFC 9113 §8.3.1: ":authority MUST NOT include the deprecated userinfo
		// subcomponent for http or https schemed URIs" (a Host that routes
		// one way here and another way upstream).
		{"userinfo in :authority", []string{":method", "GET", ":scheme", "http", ":authority", "evil@victim", ":path", "/"}},
		// §8.3.1: :scheme is http or https for an HTTP server.
		{":scheme neither http nor https", []string{":method", "GET", ":scheme", "gopher", ":authority", "x", ":path", "/"}},
		// RFC 8441 §3-4: :protocol only on a CONNECT, and only to a server that
		// sent SETTINGS_ENABLE_CONNECT_PROTOCOL (h2server does not).
		{":protocol on a GET", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", ":protocol", "websocket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := make(chan string, 4)
			servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called <- r.Host }))
			for name, addr := range servers {
				t.Run(name, func(t *testing.T) {
					nc, fr := rawClient(t, addr)
					defer nc.Close()
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: block(tc.fields...)}); err != nil {
						t.Fatal(err)
					}
					got := headOrReset(t, nc, fr, 1, 2*time.Second)
					if got != "RST_STREAM PROTOCOL_ERROR" {
						t.Errorf("answer %q, want RST_STREAM PROTOCOL_ERROR", got)
					}
					select {
					case host := <-called:
						t.Errorf("the handler was called (Host %q)", host)
					default:
					}
				})
			}
		})
	}
}

// TestStreamDependingOnItself: RFC 9113 §5.3.1 (kept from RFC 7540,
// h2spec 5.3.1): a stream that depends on itself is a stream error
// PROTOCOL_ERROR, in HEADERS or in PRIORITY, as net/http says.
func TestStreamDependingOnItself(t *testing.T) {
	servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for name, addr := range servers {
		t.Run(name+"/HEADERS", func(t *testing.T) {
			nc, fr := rawClient(t, addr)
			defer nc.Close()
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
				Priority:      http2.PriorityParam{StreamDep: 1, Weight: 15},
				BlockFragment: block(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")}); err != nil {
				t.Fatal(err)
			}
			if got := headOrReset(t, nc, fr, 1, 2*time.Second); got != "RST_STREAM PROTOCOL_ERROR" {
				t.Errorf("answer %q, want RST_STREAM PROTOCOL_ERROR", got)
			}
		})
		t.Run(name+"/PRIORITY", func(t *testing.T) {
			nc, fr := rawClient(t, addr)
			defer nc.Close()
			if err := fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 15}); err != nil {
				t.Fatal(err)
			}
			if got := headOrReset(t, nc, fr, 3, 2*time.Second); got != "RST_STREAM PROTOCOL_ERROR" {
				t.Errorf("answer %q, want RST_STREAM PROTOCOL_ERROR", got)
			}
		})
	}
}

// TestClientThatNeverSendsSettings: after the preface, a client whose
// first frame never comes is closed after 2 s (firstSettingsTimeout), as
// net/http's server does, not kept until IdleTimeout (the proxy's: 90 s).
func TestClientThatNeverSendsSettings(t *testing.T) {
	servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_, _ = nc.Write([]byte(http2.ClientPreface))
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, nc)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("connection still open 5 s after a preface with no SETTINGS")
			}
		})
	}
}

// TestRequestHeadsAsNetHTTP: what net/http's h2c server refuses or
// serves, h2server does the same (the outcome of each head on both).
func TestRequestHeadsAsNetHTTP(t *testing.T) {
	base := []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	cases := map[string][]string{
		"connection":           with("connection", "close"),
		"keep-alive":           with("keep-alive", "1"),
		"proxy-connection":     with("proxy-connection", "x"),
		"transfer-encoding":    with("transfer-encoding", "chunked"),
		"upgrade":              with("upgrade", "h2c"),
		"te gzip":              with("te", "gzip"),
		"te trailers":          with("te", "trailers"),
		"uppercase name":       with("X-Up", "1"),
		"pseudo after regular": {":method", "GET", ":scheme", "http", "x-a", "1", ":authority", "x", ":path", "/"},
		"unknown pseudo":       with(":foo", "1"),
		"duplicate :path":      with(":path", "/b"),
		"no :path":             {":method", "GET", ":scheme", "http", ":authority", "x"},
		"no :method":           {":scheme", "http", ":authority", "x", ":path", "/"},
		"CONNECT":              {":method", "CONNECT", ":authority", "x:443"},
		"CONNECT with :path":   {":method", "CONNECT", ":authority", "x:443", ":path", "/"},
		"extended CONNECT":     {":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", "x", ":path", "/"},
		"host differs":         with("host", "y"),
		"two content-lengths":  with("content-length", "1", "content-length", "2"),
		"content-length +1":    with("content-length", "+1"),
		"OPTIONS *":            {":method", "OPTIONS", ":scheme", "http", ":authority", "x", ":path", "*"},
		"path not absolute":    with(":path", "a"),
		"absolute-form :path":  {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "http://y/z"},
		"value with NUL":       with("x-a", "a\x00b"),
		"value with CR LF":     with("x-a", "a\r\nx-b: c"),
		"space in name":        with("x a", "1"),
		"empty name":           with("", "1"),
		"trailing space value": with("x-a", "v "),
	}
	outcome := func(addr string, fields []string) string {
		nc, fr := rawClient(t, addr)
		defer nc.Close()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: block(fields...)})
		got := headOrReset(t, nc, fr, 1, 2*time.Second)
		if got == "200" {
			return "served"
		}
		if got == "400" || got == "GOAWAY PROTOCOL_ERROR" || got == "RST_STREAM PROTOCOL_ERROR" {
			return "refused"
		}
		return got
	}
	servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for name, fields := range cases {
		ours, theirs := outcome(servers["h2server"], fields), outcome(servers["net/http"], fields)
		if ours != theirs {
			t.Errorf("%s: h2server %s, net/http %s", name, ours, theirs)
		}
	}
}

// TestGoAwayIsNotLostToAReset: a client that commits a connection
// error must get the GOAWAY (its error code, and the last stream processed:
// what it may retry). Closing the socket as soon as GOAWAY is written,
// with the client's later frames unread, makes Linux send RST instead of
// FIN and throw away what it had not transmitted yet, the GOAWAY with it
// (golang.org/issue/18701): here the client reads slowly (a small receive
// buffer, and a pause), so the GOAWAY would still be in the server's send
// queue at the close. Both servers read and drop the client's frames for
// up to GoAwayTimeout (1 s) before closing. (The immediate close also made
// TestDataBeyondTheWindowEndsTheConnection flaky, ~1%.)
func TestGoAwayIsNotLostToAReset(t *testing.T) {
	servers := bothServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
			nc, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_, _ = nc.Write([]byte(http2.ClientPreface))
			fr := http2.NewFramer(nc, nc)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			_ = fr.WriteSettings()
			for range 600 { // answers that fill the client's receive buffer
				_ = fr.WritePing(false, [8]byte{})
			}
			_ = fr.WriteData(3, false, []byte("x")) // DATA on a stream never opened: PROTOCOL_ERROR
			for range 100 {                         // frames sent meanwhile, which the server will not read
				_ = fr.WritePing(false, [8]byte{})
			}
			time.Sleep(300 * time.Millisecond)
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
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
		})
	}
}
