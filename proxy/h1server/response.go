package h1server

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/meshctl/meshctl/proxy/h1"
)

// writers are the write buffers of connections writing a response.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// response is the http.ResponseWriter of one request.
type response struct {
	cc     *conn
	req    *http.Request
	body   *body // nil without one
	header http.Header

	keepAlive, head, http11 bool

	status      int
	wroteHeader bool // the final status is set
	committed   bool // the head is written
	chunked     bool
	length      int64 // the declared Content-Length; -1 when none
	written     int64
	err         error
	scratch     [24]byte
}

// Header returns the response's header map.
func (w *response) Header() http.Header { return w.header }

// WriteHeader sets the status; an informational status (other than 101) is
// written at once, as net/http does.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.committed {
		return
	}
	if code < 100 || code > 999 {
		panic("h1server: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInterim(code)
		return
	}
	w.status, w.wroteHeader = code, true
}

func (w *response) writeInterim(code int) {
	bw := w.writer()
	w.statusLine(bw, code)
	w.writeFields(bw, false)
	bw.WriteString("\r\n")
	w.fail(bw.Flush())
}

// Write writes body bytes, after the head.
func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.committed {
		w.commit(false)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.head {
		return len(p), nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.cc.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.fail(err)
	return n, err
}

// Flush writes what is buffered to the client.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError writes what is buffered to the client, and says whether it could.
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	if w.err == nil {
		w.fail(w.cc.bw.Flush())
	}
	return w.err
}

// EnableFullDuplex lets the handler read the request while it writes the
// response, which this server always allows.
func (w *response) EnableFullDuplex() error { return nil }

// SetWriteDeadline sets the connection's write deadline.
func (w *response) SetWriteDeadline(t time.Time) error { return w.cc.c.SetWriteDeadline(t) }

func (w *response) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// writer returns the connection's write buffer, taking one from the pool.
func (w *response) writer() *bufio.Writer {
	if w.cc.bw == nil {
		w.cc.bw = writers.Get().(*bufio.Writer)
		w.cc.bw.Reset(w.cc.c)
	}
	return w.cc.bw
}

// commit writes the head; final says the handler has returned, so the
// body is what was written (nothing).
func (w *response) commit(final bool) {
	w.committed = true
	h := w.header
	w.length = -1
	// Looked up by its canonical key: Header.Get canonicalizes on every call.
	if cl := h["Content-Length"]; len(cl) > 0 && cl[0] != "" {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	}
	delete(h, "Transfer-Encoding")
	if h1.ConnectionClose(h) || w.cc.closing() {
		w.keepAlive = false
	}
	if w.body != nil && !w.body.drainable() {
		// More of the request may follow than is worth reading to keep
		// the connection (as net/http decides).
		w.keepAlive = false
	}
	switch {
	case !bodyAllowed(w.status) || w.head:
	case w.length >= 0:
	case final:
		w.length = 0
		h["Content-Length"] = zeroLength
	case w.http11:
		w.chunked = true
	default:
		w.keepAlive = false // the body runs until the connection closes
	}
	switch {
	case !w.keepAlive:
		h["Connection"] = closeValue
	case !w.http11:
		h["Connection"] = keepAliveValue // HTTP/1.0 closes unless told otherwise
	}
	bw := w.writer()
	w.statusLine(bw, w.status)
	w.writeFields(bw, false)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(date())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, err := bw.WriteString("\r\n")
	w.fail(err)
}

var (
	zeroLength     = []string{"0"}
	closeValue     = []string{"close"}
	keepAliveValue = []string{"keep-alive"}
)

// statusLine writes "HTTP/1.1 <code> <reason>".
func (w *response) statusLine(bw *bufio.Writer, code int) {
	if code == http.StatusOK {
		bw.WriteString("HTTP/1.1 200 OK\r\n")
		return
	}
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// writeFields writes the header fields (trailers: the trailer fields,
// keyed with http.TrailerPrefix; a field named in "Trailer" and set after
// the head is not sent), leaving out invalid names and turning line breaks in values
// into spaces, as net/http does.
func (w *response) writeFields(bw *bufio.Writer, trailers bool) {
	for k, vv := range w.header {
		name, isTrailer := strings.CutPrefix(k, http.TrailerPrefix)
		if isTrailer != trailers || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(name)
			bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

// finish ends the response once the handler has returned; false when the
// connection cannot carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	bw := w.cc.bw
	complete := true
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeFields(bw, true)
		_, err := bw.WriteString("\r\n")
		w.fail(err)
	} else if w.length >= 0 && w.written < w.length && !w.head && bodyAllowed(w.status) {
		complete = false // the client counts on bytes that will not come
	}
	w.fail(bw.Flush())
	bw.Reset(nil)
	writers.Put(bw)
	w.cc.bw = nil
	return complete && w.err == nil
}

// abandon drops what the response buffered after its handler panicked:
// the connection is closed without ending the response, so the client
// sees it cut off rather than complete.
func (w *response) abandon() {
	if bw := w.cc.bw; bw != nil {
		bw.Reset(nil)
		writers.Put(bw)
		w.cc.bw = nil
	}
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// cachedDate is the Date field's value, made once a second.
var cachedDate atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	b   []byte
}

func date() []byte {
	now := time.Now()
	if d := cachedDate.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateValue{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.b
}
