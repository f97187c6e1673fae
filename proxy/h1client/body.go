package h1client

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/meshctl/meshctl/proxy/h1"
)

// errBodyClosed is a read of a response body after its Close.
var errBodyClosed = errors.New("h1client: read of a closed response body")

// body is a response body streamed from its connection. Once it ends (its
// last byte read, an error, or Close) the connection goes back to the pool
// or is closed.
type body struct {
	ex      *exchange
	res     *http.Response
	framing h1.Framing
	left    int64 // of a Content-Length body
	chunked h1.ChunkedReader

	mu  sync.Mutex // Read and Close may race
	err error      // why it ended; sticky
}

// startBody gives res its body; one with none ends the exchange at once.
func (ex *exchange) startBody(res *http.Response, head *h1.Response) {
	if head.Framing == h1.NoBody {
		res.Body = http.NoBody
		ex.finish(true)
		return
	}
	b := &ex.body
	b.ex, b.res, b.framing, b.left = ex, res, head.Framing, head.ContentLength
	if head.Framing == h1.Chunked {
		b.chunked.Reset(ex.cc.br)
	}
	res.Body = b
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	br := b.ex.cc.br
	var n int
	var err error
	switch b.framing {
	case h1.Length:
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = br.Read(p)
		b.left -= int64(n)
		switch {
		case b.left == 0:
			err = io.EOF
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
	case h1.Chunked:
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			b.trailers()
		}
	default: // until the connection closes
		n, err = br.Read(p)
	}
	if err != nil {
		if err != io.EOF {
			if cerr := b.ex.ctx.Err(); cerr != nil {
				err = cerr // the deadline that interrupted the read was the context's
			}
		}
		b.err = err
		b.ex.finish(err == io.EOF) // a body until close left keepAlive false
	}
	return n, err
}

// trailers puts the chunked body's trailer fields in the response's
// Trailer, replacing what the head announced (as net/http does).
func (b *body) trailers() {
	fields := b.chunked.Trailers
	if len(fields) == 0 {
		return
	}
	got := make(http.Header, len(fields))
	for _, f := range fields {
		k := h1.CanonicalKey(f.Name)
		got[k] = append(got[k], string(f.Value))
	}
	if b.res.Trailer == nil {
		b.res.Trailer = got
		return
	}
	for k, vv := range got {
		b.res.Trailer[k] = vv
	}
}

// Close ends the body; before its end, the connection is closed (what is
// left of the body would have to be read first).
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = errBodyClosed
		b.ex.finish(false)
	}
	return nil
}

// response makes the http.Response of a final head, as net/http's reader
// would.
func (ex *exchange) response(head *h1.Response) *http.Response {
	h, reason, _ := h1.Header(head.Fields, head.Reason, nil)
	res := &http.Response{
		Status:     statusText(head.Status, reason),
		StatusCode: head.Status,
		Proto:      protos[head.Minor],
		ProtoMajor: 1,
		ProtoMinor: head.Minor,
		Header:     h,
		Close:      !head.KeepAlive,
		Request:    ex.req,
	}
	ex.keepAlive = ex.keepAlive && head.KeepAlive
	if head.Minor >= 1 && h1.ConnectionClose(h) {
		delete(h, "Connection") // as net/http: Close says it
	}
	_, chunked := h["Transfer-Encoding"]
	if chunked {
		// The parser let only "chunked" through.
		delete(h, "Transfer-Encoding")
		res.TransferEncoding = []string{"chunked"}
		res.Trailer = announcedTrailers(h)
	}
	switch {
	case head.Framing == h1.Length:
		res.ContentLength = head.ContentLength
	case head.Framing != h1.NoBody:
		res.ContentLength = -1
	case ex.req.Method == http.MethodHead:
		// The length of the GET's body, when the head says.
		res.ContentLength = -1
		if v := h["Content-Length"]; len(v) > 0 && !chunked {
			if n, err := strconv.ParseInt(v[0], 10, 64); err == nil {
				res.ContentLength = n
			}
		}
	}
	return res
}

// announcedTrailers takes the Trailer field out of h and returns the
// fields it names, without values yet.
func announcedTrailers(h http.Header) http.Header {
	vv, ok := h["Trailer"]
	if !ok {
		return nil
	}
	delete(h, "Trailer")
	t := http.Header{}
	for _, v := range vv {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				t[http.CanonicalHeaderKey(name)] = nil
			}
		}
	}
	return t
}

// protos are the response versions' names, by minor digit.
var protos = func() (p [10]string) {
	for i := range p {
		p[i] = "HTTP/1." + strconv.Itoa(i)
	}
	return p
}()

// statusLines are "code text" for the codes net/http knows: a response
// with the usual reason phrase allocates no status string.
var statusLines = func() map[int]string {
	m := map[int]string{}
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = strconv.Itoa(code) + " " + t
		}
	}
	return m
}()

func statusText(code int, reason string) string {
	if s, ok := statusLines[code]; ok && len(s) == len(reason)+4 && s[4:] == reason {
		return s
	}
	if reason == "" {
		return strconv.Itoa(code)
	}
	return strconv.Itoa(code) + " " + reason
}
