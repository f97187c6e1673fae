package h1client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/h1"
)

// FuzzResponseAgainstTransport sends one request, GET or HEAD, to an
// upstream that answers with the fuzzer's bytes, through this client and
// through net/http's Transport, and fails when they read a different
// response (status, fields, length, body, trailers), or when this client
// accepts what net/http refuses. This client may refuse more (a strict
// refusal of the head, a malformed chunk that net/http tolerates), never
// less.
func FuzzResponseAgainstTransport(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 304 Not Modified\r\nEtag: x\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: close\r\n\r\nrest",
		"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nabc",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	// net/http's Transport logs the bytes after a response it did not ask
	// for (a body of a HEAD answer, a 204's): the fuzzer sends many.
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		dial := func(context.Context, string, string) (net.Conn, error) { return newMemConn(in), nil }
		ours := New(Config{Dial: dial, Fallback: roundTripFunc(func(*http.Request) (*http.Response, error) {
			t.Fatal("handed over")
			return nil, nil
		})})
		defer ours.Close()
		theirs := &http.Transport{DialContext: dial, DisableCompression: true}
		defer theirs.CloseIdleConnections()

		got, gotErr := roundTrip(ours, method)
		want, wantErr := roundTrip(theirs, method)
		switch {
		case gotErr != nil && wantErr != nil:
			return
		case gotErr != nil:
			if !strictRefusal(gotErr) {
				t.Fatalf("refused what net/http reads (%d %v): %v", want.status, want.header, gotErr)
			}
			return
		case wantErr != nil && strings.Contains(wantErr.Error(), "readLoopPeekFailLocked"):
			// Bytes after a response without a body: net/http's reader
			// may see them as unsolicited before the response is handed
			// back (a race of its own), and fail the request.
			return
		case wantErr != nil:
			t.Fatalf("read what net/http refuses (%v): %d %v", wantErr, got.status, got.header)
		}
		if got.status != want.status || got.length != want.length || !reflect.DeepEqual(got.header, want.header) ||
			!slices.Equal(got.te, want.te) || !slices.Equal(got.announced, want.announced) {
			t.Fatalf("heads differ:\n ours   %+v\n theirs %+v", got, want)
		}
		switch {
		case got.bodyErr != nil && want.bodyErr == nil:
			if !errors.Is(got.bodyErr, h1.ErrMalformedChunk) {
				t.Fatalf("body refused (%v) where net/http read %q", got.bodyErr, want.body)
			}
		case got.bodyErr == nil && want.bodyErr != nil:
			t.Fatalf("body read (%q) where net/http refused it: %v", got.body, want.bodyErr)
		case got.bodyErr == nil && (!bytes.Equal(got.body, want.body) || !reflect.DeepEqual(got.trailer, want.trailer)):
			t.Fatalf("bodies differ:\n ours   %q %v\n theirs %q %v", got.body, got.trailer, want.body, want.trailer)
		}
	})
}

// read is what a client made of a response.
type read struct {
	status    int
	header    http.Header
	length    int64
	te        []string
	announced []string
	body      []byte
	bodyErr   error
	trailer   http.Header
}

func roundTrip(rt http.RoundTripper, method string) (read, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://upstream/", nil)
	res, err := rt.RoundTrip(req)
	if err != nil {
		return read{}, err
	}
	defer res.Body.Close()
	r := read{status: res.StatusCode, header: res.Header, length: res.ContentLength, te: res.TransferEncoding,
		announced: slices.Sorted(maps.Keys(res.Trailer))}
	r.body, r.bodyErr = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	r.trailer = res.Trailer
	if len(r.trailer) == 0 {
		r.trailer = nil
	}
	return r, nil
}

// strictRefusal reports whether err is a refusal this client makes on
// purpose where net/http is lenient.
func strictRefusal(err error) bool {
	var he *h1.Error
	if errors.As(err, &he) {
		return he.Reason.StrictOnly()
	}
	return errors.Is(err, ErrUnexpectedSwitch) || errors.Is(err, ErrTooManyInformational)
}

// memConn reads the given bytes, then EOF; what is written is discarded.
type memConn struct {
	mu sync.Mutex
	r  *bytes.Reader
}

func newMemConn(b []byte) *memConn { return &memConn{r: bytes.NewReader(b)} }

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
