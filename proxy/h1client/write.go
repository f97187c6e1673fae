package h1client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/meshctl/meshctl/proxy/h1"
)

// chunks are the buffers a chunked request body is copied through.
var chunks = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// bodyError is the request's own body failing to be read (the client
// stopped sending it).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "h1client: reading the request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// framing is how a request's body is sent.
type framing struct {
	length  int64 // the Content-Length to send; -1 for none
	chunked bool
	close   bool // the connection ends after this exchange
}

func framingOf(req *http.Request, hasBody bool) framing {
	f := framing{length: -1, close: req.Close || h1.ConnectionClose(req.Header)}
	switch {
	case !hasBody:
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			f.length = 0 // as net/http: these say they have none
		}
	case req.ContentLength > 0 && len(req.Trailer) == 0:
		f.length = req.ContentLength
	default:
		f.chunked = true // an unknown length, or trailers to send
	}
	return f
}

// check refuses a request that cannot be written as it is (as net/http's
// Transport does): a field that would break the head, a bad method or
// Host, a length the body cannot have.
func check(req *http.Request) error {
	if req.URL == nil || req.URL.Host == "" {
		return errors.New("h1client: request without an address")
	}
	if !validMethod(req.Method) {
		return fmt.Errorf("h1client: invalid method %q", req.Method)
	}
	if host := hostOf(req); !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h1client: invalid Host %q", host)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1client: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1client: invalid header field value for %q", k)
			}
		}
	}
	if !validTarget(req.URL.RawQuery) || !validTarget(req.URL.Opaque) {
		return errors.New("h1client: a control character or space in the request target")
	}
	for k := range req.Trailer {
		if !validTrailer(k) {
			return fmt.Errorf("h1client: invalid trailer name %q", k)
		}
	}
	if (req.Body == nil || req.Body == http.NoBody) && req.ContentLength > 0 {
		return fmt.Errorf("h1client: Content-Length %d without a body", req.ContentLength)
	}
	return nil
}

// validTarget reports whether a part of the target written as it is (the
// query, an opaque target) has no byte that would end the request line.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// validTrailer reports whether a trailer field may be sent: a valid name
// that does not frame or route the message (the receiver refuses those).
func validTrailer(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Length", "Transfer-Encoding", "Trailer", "Host":
		return false
	}
	return httpguts.ValidHeaderFieldName(name)
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true // "" is GET
}

func hostOf(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

// writeHead writes the request line and fields into bw.
func writeHead(bw *bufio.Writer, req *http.Request, f framing) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	writeTarget(bw, req.URL)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(hostOf(req))
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // written from the request's own fields
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	if f.close && !h1.ConnectionClose(req.Header) {
		bw.WriteString("Connection: close\r\n")
	}
	switch {
	case f.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case f.length >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), f.length, 10))
		bw.WriteString("\r\n")
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		bw.WriteString("Trailer: ")
		for i, k := range keys {
			if i > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(k)
		}
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// writeTarget writes the request's origin-form target (RequestURI,
// without its allocation in the usual case).
func writeTarget(bw *bufio.Writer, u *url.URL) {
	if u.Opaque != "" {
		bw.WriteString(u.RequestURI())
		return
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	bw.WriteString(p)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
}

// writeBody sends the request's body after its head (already in bw), then
// closes it. It runs in its own goroutine, while the response is read; an
// early response does not wait for it.
func (ex *exchange) writeBody(bw *bufio.Writer, f framing) {
	var err error
	if f.chunked {
		err = ex.copyChunked(bw)
	} else {
		err = copyLength(bw, ex.req.Body, f.length)
	}
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	ex.req.Body.Close()
	ex.writeErr = err
	close(ex.wrote)
	var be *bodyError
	if errors.As(err, &be) {
		// The upstream waits for the rest of a body that will not come.
		_ = ex.cc.c.Close()
	}
}

// copyLength copies n bytes of body into bw, read straight into its free
// space, and sends each read at once: a small request goes out in one
// write, head and body together, and a slow upload reaches the upstream
// as it comes. (The head waits for the body's first bytes: an upstream
// cannot refuse a body it has not begun to get before the client starts
// sending it, which a client that sent Content-Length does at once.)
func copyLength(bw *bufio.Writer, body io.Reader, n int64) error {
	for n > 0 {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		buf := bw.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		k, err := body.Read(buf)
		if _, werr := bw.Write(buf[:k]); werr != nil {
			return werr
		}
		n -= int64(k)
		switch {
		case err == io.EOF && n > 0:
			return &bodyError{io.ErrUnexpectedEOF}
		case err == io.EOF:
			return nil
		case err != nil:
			return &bodyError{err}
		}
		if k > 0 && n > 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyChunked sends the body in chunks as it comes, each flushed (a
// streaming client's upstream sees each piece when it is sent), then the
// request's trailers. The head goes first, on its own: a body of unknown
// length is often a stream that starts later.
func (ex *exchange) copyChunked(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return err
	}
	bufp := chunks.Get().(*[]byte)
	defer chunks.Put(bufp)
	buf := *bufp
	for {
		n, err := ex.req.Body.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(ex.scratch[:0], int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
			if werr := bw.Flush(); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &bodyError{err}
		}
	}
	bw.WriteString("0\r\n")
	for k, vv := range ex.req.Trailer {
		if !validTrailer(k) {
			continue // added while the body was read: dropped, as net/http's Header.Write does
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				bw.WriteString(k)
				bw.WriteString(": ")
				bw.WriteString(textproto.TrimString(v))
				bw.WriteString("\r\n")
			}
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}
