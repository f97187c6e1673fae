// Package detect decides which protocol a client speaks from the first bytes
// it sends: HTTP/1.x, HTTP/2 with prior knowledge (the h2c preface), TLS, or
// anything else (opaque TCP). Clients of server-speaks-first protocols send
// nothing, so detection gives up after a short timeout and calls them opaque.
package detect

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Protocol is what a connection was detected to speak.
type Protocol uint8

// The protocols Detect tells apart.
const (
	Opaque Protocol = iota
	HTTP1
	HTTP2
	TLS
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2c"
	case TLS:
		return "tls"
	default:
		return "opaque"
	}
}

// Preface is the HTTP/2 connection preface a prior-knowledge client sends first.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// MaxPeek is the most Detect reads before deciding: enough for an HTTP/1
// request line with a long target, and for a whole TLS record (16 KiB of
// payload and its 5-byte header), where the ClientHello's ALPN is.
const MaxPeek = 16*1024 + 5

// knownMethods decide HTTP/1 at once, from the first bytes.
var knownMethods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("HEAD "), []byte("DELETE "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

// Classify decides the protocol from the bytes a client has sent so far. When
// more bytes could change the answer it returns done=false.
func Classify(b []byte) (p Protocol, done bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	// TLS: a handshake record (0x16) of version 3.x.
	if b[0] == 0x16 {
		if len(b) < 3 {
			return Opaque, false
		}
		if b[1] == 0x03 && b[2] <= 0x04 {
			return TLS, true
		}
		return Opaque, true
	}
	// HTTP/2 preface. "PRI" also looks like an HTTP/1 method, so it must be
	// checked first and in full.
	if n := min(len(b), len(Preface)); bytes.Equal(b[:n], []byte(Preface)[:n]) {
		if n == len(Preface) {
			return HTTP2, true
		}
		return Opaque, false
	}
	for _, m := range knownMethods {
		n := min(len(b), len(m))
		if bytes.Equal(b[:n], m[:n]) {
			if n == len(m) {
				return HTTP1, true
			}
			return Opaque, false
		}
	}
	return classifyRequestLine(b)
}

// classifyRequestLine accepts any other method token (WebDAV's PROPFIND, for
// example) when a whole "TOKEN SP TARGET SP HTTP/1.x CRLF" line is present.
func classifyRequestLine(b []byte) (Protocol, bool) {
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	if i == len(b) {
		return Opaque, i > 32 // a method is a short token
	}
	if i == 0 || b[i] != ' ' {
		return Opaque, true
	}
	eol := bytes.Index(b, []byte("\r\n"))
	if eol < 0 {
		return Opaque, len(b) >= MaxPeek
	}
	line := b[:eol]
	if bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
		return HTTP1, true
	}
	return Opaque, true
}

// isTokenChar reports whether c may appear in an HTTP method (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// Detect reads from conn until Classify decides (for TLS: until the first
// record is complete, so its ClientHello can be read), the client stops
// sending for timeout, or MaxPeek bytes arrived, and returns the protocol and
// the bytes it read (which the caller must replay). The bytes go into buf,
// which grows (up to MaxPeek) only when a decision needs more: most need a
// few bytes, so a small buffer serves most connections. A client that sends nothing within timeout is
// opaque (a server-speaks-first protocol); err is set only when reading failed
// otherwise, and the connection is then unusable.
func Detect(conn net.Conn, timeout time.Duration, buf []byte) (Protocol, []byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	buf = buf[:0]
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Opaque, nil, err
	}
	defer conn.SetReadDeadline(time.Time{})
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= MaxPeek {
				p, _ := Classify(buf)
				return p, buf, nil
			}
			grown := make([]byte, len(buf), min(4*cap(buf), MaxPeek))
			copy(grown, buf)
			buf = grown
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if p, done := Classify(buf); done {
			if l, ok := TLSRecordLen(buf); p != TLS || ok && len(buf) >= l {
				return p, buf, nil
			}
			if err == nil {
				continue // the rest of the first TLS record
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			return p, buf, err
		}
		if err != nil {
			// A client that went quiet (a server-speaks-first protocol) or
			// finished sending (half-closed after its data) is opaque; what it
			// sent is forwarded.
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) && len(buf) > 0 {
				return Opaque, buf, nil
			}
			return Opaque, buf, err
		}
	}
}
