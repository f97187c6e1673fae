package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// goServerReads is what net/http's own server makes of a request head,
// served over an in-memory connection: the request its handler gets (with
// the head's length, from http.ReadRequest), or ok=false when the server
// answers it with an error instead.
func goServerReads(in []byte) (req *http.Request, n int, ok bool) {
	conn := &memConn{r: bytes.NewReader(in), closed: make(chan struct{})}
	got := make(chan *http.Request, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			select {
			case got <- r.Clone(context.Background()):
			default:
			}
		}),
		ErrorLog:                     log.New(io.Discard, "", 0),
		DisableGeneralOptionsHandler: true, // "OPTIONS *" to the handler too
	}
	ln := &oneConnListener{conn: conn, done: make(chan struct{})}
	go func() { _ = srv.Serve(ln) }()
	<-conn.closed
	_ = srv.Close()
	select {
	case req = <-got:
	default:
		return nil, 0, false
	}
	br := bufio.NewReaderSize(bytes.NewReader(in), len(in)+16)
	if _, err := http.ReadRequest(br); err == nil {
		n = len(in) - br.Buffered()
	}
	return req, n, true
}

// memConn is a connection that reads the given bytes and then EOF, and
// discards what is written.
type memConn struct {
	r      *bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener accepts its connection once, then waits to be closed.
type oneConnListener struct {
	conn     net.Conn
	accepted bool
	once     sync.Once
	done     chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.accepted {
		l.accepted = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// FuzzRequestHeadAgainstNetHTTP feeds the same bytes to Parse and to
// net/http's server. It fails when Parse accepts a head net/http refuses,
// when both accept and read a different request (method, target, Host,
// version, fields, body framing, keep-alive, head length), and when
// net/http accepts a head Parse refuses for a reason that is not one of
// its deliberate strictnesses (Reason.StrictOnly).
func FuzzRequestHeadAgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: web:80\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET http://api:8080/x HTTP/1.1\r\nHost: o\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\nPragma: no-cache\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := r.Parse(in)
		goReq, goN, goOK := goServerReads(in)
		var refusal *Error
		switch {
		case errors.Is(err, ErrIncomplete):
			if goOK {
				t.Fatalf("Parse wants more bytes; net/http read %q %q from %q", goReq.Method, goReq.RequestURI, in)
			}
			return
		case errors.As(err, &refusal):
			if goOK && !refusal.Reason.StrictOnly() {
				t.Fatalf("Parse refused %q (%d %s); net/http accepts it", in, refusal.Status, refusal.Reason)
			}
			return
		case err != nil:
			t.Fatalf("Parse: %v", err)
		}
		if !goOK {
			t.Fatalf("Parse accepted %q; net/http refuses it", in)
		}
		if n != goN {
			t.Errorf("head length %d, net/http %d", n, goN)
		}
		if string(r.Method) != goReq.Method || string(r.Target) != goReq.RequestURI || string(r.Host) != goReq.Host || r.Minor != goReq.ProtoMinor {
			t.Errorf("read %q %q host %q HTTP/1.%d; net/http %q %q host %q HTTP/1.%d",
				r.Method, r.Target, r.Host, r.Minor, goReq.Method, goReq.RequestURI, goReq.Host, goReq.ProtoMinor)
		}
		wantLength := map[Framing]int64{NoBody: 0, Length: r.ContentLength, Chunked: -1}[r.Framing]
		if goReq.ContentLength != wantLength || (r.Framing == Chunked) != slices.Equal(goReq.TransferEncoding, []string{"chunked"}) {
			t.Errorf("framing %v length %d; net/http length %d, transfer encoding %q", r.Framing, r.ContentLength, goReq.ContentLength, goReq.TransferEncoding)
		}
		if r.KeepAlive == goReq.Close {
			t.Errorf("keep-alive %v; net/http close %v", r.KeepAlive, goReq.Close)
		}
		// The fields, as net/http keeps them: it takes Host,
		// Transfer-Encoding, Expect (100-continue) and (for "close")
		// Connection out, and adds Cache-Control for "Pragma: no-cache".
		skip := func(k string) bool {
			return k == "Host" || k == "Transfer-Encoding" || k == "Connection" || k == "Content-Length" || k == "Expect" || k == "Trailer" ||
				k == "Cache-Control" && goReq.Header.Get("Pragma") == "no-cache"
		}
		ours := http.Header{}
		for _, fl := range r.Fields {
			if k := http.CanonicalHeaderKey(string(fl.Name)); !skip(k) {
				ours[k] = append(ours[k], string(fl.Value))
			}
		}
		theirs := http.Header{}
		for k, vv := range goReq.Header {
			if !skip(k) {
				theirs[k] = vv
			}
		}
		if !headersEqual(ours, theirs) {
			t.Errorf("fields %q; net/http %q", ours, theirs)
		}
	})
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestStrictReasonsAreAcceptedByNetHTTP keeps Reason.StrictOnly honest:
// each strict refusal in the smuggling table is one net/http's server
// accepts, and each other refusal one it refuses too.
func TestStrictReasonsAreAcceptedByNetHTTP(t *testing.T) {
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
		"CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\n\r\n",
		"GET http://u@api/ HTTP/1.1\r\nHost: api\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: y\r\n", DefaultMaxFields) + "\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
		"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 04\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n",
		"GET 1:x HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		var r Request
		_, err := r.Parse([]byte(head))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: %v, want a refusal", head, err)
			continue
		}
		if _, _, goOK := goServerReads([]byte(head)); goOK != e.Reason.StrictOnly() {
			t.Errorf("%q: refused for %q (strict %v); net/http accepts it: %v", head, e.Reason, e.Reason.StrictOnly(), goOK)
		}
	}
}
