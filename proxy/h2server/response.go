package h2server

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2"
)

// runHandler serves a stream's request in its own goroutine.
func (c *conn) runHandler(s *stream) {
	w := &responseWriter{s: s, isHead: s.req.Method == http.MethodHead}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.srv.cfg.Log.Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			}
			c.mu.Lock()
			s.resetLocked(http2.ErrCodeInternal)
			c.mu.Unlock()
		} else {
			_ = w.send(true)
		}
		if w.bufp != nil {
			h2.PutBuf(w.bufp)
			w.bufp = nil
		}
		c.mu.Lock()
		s.handlerDone = true
		s.cancel()
		s.closeBodyLocked()
		s.maybeFinish()
		c.mu.Unlock()
	}()
	c.srv.cfg.Handler.ServeHTTP(w, s.req)
}

// responseWriter is a handler's http.ResponseWriter. Writes fill a pooled
// chunk; a full chunk (or Flush) goes to the writer, and Write waits until
// it is written (the stream's flow control). The last chunk goes with
// END_STREAM when the handler returns, without waiting.
type responseWriter struct {
	s           *stream
	header      http.Header
	status      int
	wroteHeader bool
	headQueued  bool
	isHead      bool
	noBody      bool
	trailerKeys []string
	bufp        *[]byte
	n           int
}

// Header returns the response's header.
func (w *responseWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

// WriteHeader sets the response's status; a 1xx status (but 101) is sent
// at once, as an informational response.
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 100 || code > 999 {
		return
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return
		}
		fields := w.headFields(code)
		c := w.s.c
		c.mu.Lock()
		if !w.s.reset {
			c.heads = append(c.heads, headItem{s: w.s, kind: headInfo, fields: fields})
			c.signal()
		}
		c.mu.Unlock()
		return
	}
	w.wroteHeader, w.status = true, code
	w.noBody = code == http.StatusNoContent || code == http.StatusNotModified
	for _, v := range w.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) {
				w.trailerKeys = append(w.trailerKeys, k)
			}
		}
	}
}

// Write adds p to the response's body.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.isHead {
		return len(p), nil
	}
	total := 0
	for len(p) > 0 {
		if w.bufp == nil {
			w.bufp, w.n = h2.GetBuf(), 0
		}
		k := copy((*w.bufp)[w.n:maxData], p)
		w.n += k
		total += k
		p = p[k:]
		if w.n == maxData {
			if err := w.send(false); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// Flush sends the head and what was written so far.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, with the error of a stream that ended.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.send(false)
}

// send queues the head (once) and the pending chunk. The last one (final)
// ends the stream, with the trailers if there are any; a chunk before it
// is waited for, so its buffer can take the next.
func (w *responseWriter) send(final bool) error {
	s := w.s
	c := s.c
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var head, trailers []hpack.HeaderField
	if !w.headQueued {
		head = w.headFields(w.status)
	}
	if final {
		trailers = w.trailerFields()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.reset {
		return errStreamClosed
	}
	hasData := w.n > 0
	endWithData := final && len(trailers) == 0
	if !w.headQueued {
		w.headQueued, s.finalHead = true, true
		end := endWithData && !hasData
		c.heads = append(c.heads, headItem{s: s, kind: headFinal, fields: head, end: end})
		c.signal()
		if end {
			return nil
		}
	} else if !hasData && !final {
		return nil
	}
	if hasData || endWithData {
		s.data, s.off, s.dataEnd = nil, 0, endWithData
		if hasData {
			s.data = (*w.bufp)[:w.n]
		}
		s.requeueLocked()
	}
	if endWithData {
		if hasData {
			s.ownBuf, w.bufp, w.n = w.bufp, nil, 0 // freed once written
		}
		return nil
	}
	for !s.reset && (s.off < len(s.data) || s.writing > 0) {
		c.mu.Unlock()
		<-s.sendWake
		c.mu.Lock()
	}
	for s.writing > 0 { // the writer may still read the buffer
		c.mu.Unlock()
		<-s.sendWake
		c.mu.Lock()
	}
	s.data, s.off, w.n = nil, 0, 0
	if s.reset {
		return errStreamClosed
	}
	if final {
		c.heads = append(c.heads, headItem{s: s, kind: headTrailers, fields: trailers, end: true})
		c.signal()
	}
	return nil
}

// headFields flattens the head for the writer: connection-specific and
// invalid fields are left out, as net/http's server does.
func (w *responseWriter) headFields(status int) []hpack.HeaderField {
	fields := make([]hpack.HeaderField, 0, 1+len(w.header))
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: statusText(status)})
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name, ok := h2.Lower(k)
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		switch name {
		case "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive":
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				fields = append(fields, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	return fields
}

// trailerFields returns the declared trailers' values and those set with
// http.TrailerPrefix.
func (w *responseWriter) trailerFields() []hpack.HeaderField {
	var fields []hpack.HeaderField
	add := func(k string, vv []string) {
		name, ok := h2.Lower(k)
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				fields = append(fields, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	for _, k := range w.trailerKeys {
		add(k, w.header[k])
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(http.CanonicalHeaderKey(k[len(http.TrailerPrefix):]), vv)
		}
	}
	return fields
}

// statusFields is a head of only a status.
func statusFields(code int) []hpack.HeaderField {
	return []hpack.HeaderField{{Name: ":status", Value: statusText(code)}}
}

// statusText is a status as :status carries it.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}
