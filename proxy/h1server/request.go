package h1server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/meshctl/meshctl/proxy/h1"
)

// maxDrainBytes is how much of a request body a handler left unread is read
// and thrown away to keep the connection; more, and it is closed (as
// net/http does).
const maxDrainBytes = 256 << 10

// errTooLarge is a head larger than the buffer: handed off.
var errTooLarge = errors.New("h1server: request head larger than the buffer")

// serveRequest reads one request and answers it; false when the
// connection is done (closed, or handed off).
func (cc *conn) serveRequest() bool {
	if err := cc.c.SetReadDeadline(time.Now().Add(cc.s.readHeaderTimeout())); err != nil {
		return false
	}
	n, err := cc.readHead()
	if err != nil {
		var herr *h1.Error
		switch {
		case errors.As(err, &herr) && cc.connect():
			cc.handOff() // h1 leaves the authority form to net/http
		case errors.As(err, &herr):
			cc.refuse(herr.Status, herr.Reason)
		case errors.Is(err, errTooLarge):
			cc.handOff()
		case cc.br.Buffered() > 0 && !isTimeout(err):
			// The client ended (or reset) its connection mid-head: answered
			// 400 as net/http does, if anyone is still there to read it.
			cc.refuse(http.StatusBadRequest, h1.Reason("incomplete request head"))
		default:
			cc.s.debug("request head not read", "client", cc.remoteAddr, "error", err)
		}
		return false
	}
	r := &cc.req
	if r.Upgrade != nil || r.ExpectContinue || string(r.Method) == http.MethodConnect {
		cc.handOff()
		return false
	}
	if err := cc.c.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	req, body, err := cc.newRequest(n)
	if err != nil {
		cc.refuse(http.StatusBadRequest, h1.Reason("bad target"))
		return false
	}
	ctx, cancel := context.WithCancel(cc.ctx)
	defer cancel()
	req = req.WithContext(ctx)
	w := &response{cc: cc, req: req, header: make(http.Header), keepAlive: r.KeepAlive && !cc.closing(),
		head: req.Method == http.MethodHead, http11: r.ProtoAtLeast11()}
	cc.bgCancel = cancel
	if body == nil {
		cc.watch()
	} else {
		body.onEOF = cc.watch
	}
	cc.s.Handler.ServeHTTP(w, req)
	cc.unwatch()
	if !w.finish() || cc.bgGone {
		return false
	}
	if body != nil && !body.drain() {
		return false
	}
	return w.keepAlive && !cc.closing()
}

// readHead reads until the buffer holds a whole head and parses it into
// cc.req; it returns the head's length.
func (cc *conn) readHead() (int, error) {
	for {
		buf, _ := cc.br.Peek(cc.br.Buffered())
		n, err := cc.req.Parse(buf)
		if !errors.Is(err, h1.ErrIncomplete) {
			return n, err
		}
		if cc.br.Buffered() == cc.br.Size() {
			return 0, errTooLarge
		}
		if _, err := cc.br.Peek(cc.br.Buffered() + 1); err != nil {
			return 0, err
		}
	}
}

// connect reports whether the buffered request is a CONNECT.
func (cc *conn) connect() bool {
	b, _ := cc.br.Peek(min(cc.br.Buffered(), len("CONNECT ")))
	return string(b) == "CONNECT "
}

// handOff gives the connection, with what is buffered of it, to HandOff.
func (cc *conn) handOff() {
	if cc.s.HandOff == nil {
		cc.refuse(http.StatusNotImplemented, h1.Reason("not served"))
		return
	}
	buffered, _ := cc.br.Peek(cc.br.Buffered())
	rest := append([]byte(nil), buffered...)
	cc.release()
	_ = cc.c.SetReadDeadline(time.Time{})
	cc.mu.Lock()
	cc.handedOff = true // serve's deferred close, and Shutdown, leave it alone
	cc.mu.Unlock()
	cc.s.HandOff(cc.c, rest)
}

// refuse answers a request that is not served with status and closes.
func (cc *conn) refuse(status int, reason h1.Reason) {
	if cc.s.Refused != nil {
		cc.s.Refused(cc.c, status, reason)
	}
	text := http.StatusText(status)
	msg := "HTTP/1.1 " + strconv.Itoa(status) + " " + text +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(text)+len(reason)+3) + "\r\n\r\n" + text + ": " + string(reason) + "\n"
	_ = cc.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(cc.c, msg)
}

// newRequest makes the http.Request of the head in cc.req, n bytes long,
// and discards the head from the buffer. body is nil for a request
// without one.
func (cc *conn) newRequest(n int) (*http.Request, *body, error) {
	r := &cc.req
	header, target, host := headers(r.Fields, r.Target, r.Host)
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, nil, err
	}
	req := &http.Request{
		Method:     method(r.Method),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header:     header,
		Host:       host,
		RemoteAddr: cc.remoteAddr,
		RequestURI: target,
		Close:      !r.KeepAlive,
		Body:       http.NoBody,
	}
	if r.Minor == 0 {
		req.Proto, req.ProtoMinor = "HTTP/1.0", 0
	}
	delete(req.Header, "Host")
	var b *body
	switch r.Framing {
	case h1.Length:
		req.ContentLength = r.ContentLength
		b = &body{cc: cc, left: r.ContentLength}
	case h1.Chunked:
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		b = &body{cc: cc, chunked: h1.NewChunkedReader(cc.br), left: -1}
	}
	if _, err := cc.br.Discard(n); err != nil {
		return nil, nil, err
	}
	if b != nil {
		req.Body = b
	}
	return req, b, nil
}

// method returns the method's string, without allocating for the
// standard ones.
func method(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPut:
		return http.MethodPut
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodOptions:
		return http.MethodOptions
	}
	return string(m)
}

// headers makes the header map of the fields, and the strings of the
// target and the host: one string holds them and every value, one slice
// every value list (as net/http's reader does).
func headers(fields []h1.Field, target, host []byte) (h http.Header, targetStr, hostStr string) {
	size := len(target) + len(host)
	for _, f := range fields {
		size += len(f.Value)
	}
	all := make([]byte, 0, size)
	all = append(all, target...)
	all = append(all, host...)
	for _, f := range fields {
		all = append(all, f.Value...)
	}
	// all is never written again: the string may share its bytes.
	values := unsafe.String(unsafe.SliceData(all), len(all))
	targetStr, hostStr = values[:len(target)], values[len(target):len(target)+len(host)]
	off := len(target) + len(host)
	lists := make([]string, len(fields))
	h = make(http.Header, len(fields))
	for i, f := range fields {
		v := values[off : off+len(f.Value)]
		off += len(f.Value)
		key := canonicalKey(f.Name)
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
			continue
		}
		lists[i] = v
		h[key] = lists[i : i+1 : i+1]
	}
	return h, targetStr, hostStr
}

// body is a request body read from the connection's buffer.
type body struct {
	cc      *conn
	chunked *h1.ChunkedReader
	left    int64 // Content-Length bytes not read yet; -1 when chunked
	err     error
	onEOF   func()
	closed  bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	var n int
	var err error
	if b.chunked != nil {
		n, err = b.chunked.Read(p)
	} else {
		if b.left == 0 {
			err = io.EOF
		} else {
			if int64(len(p)) > b.left {
				p = p[:b.left]
			}
			n, err = b.cc.br.Read(p)
			b.left -= int64(n)
			if b.left == 0 {
				err = io.EOF
			} else if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
		}
	}
	if err != nil {
		b.err = err
		if errors.Is(err, io.EOF) && b.onEOF != nil {
			b.onEOF()
		}
	}
	return n, err
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

// drain reads what the handler left of the body, up to maxDrainBytes;
// false when the connection cannot carry another request.
func (b *body) drain() bool {
	if errors.Is(b.err, io.EOF) {
		return true
	}
	if b.err != nil {
		return false
	}
	b.closed = false
	n, err := io.Copy(io.Discard, io.LimitReader(b, maxDrainBytes+1))
	return n <= maxDrainBytes && (err == nil || errors.Is(err, io.EOF)) && errors.Is(b.err, io.EOF)
}

// watch reads the connection in the background while the handler runs, as
// net/http does, to cancel the request when the client goes away. It is
// started once the request's body has been read (or at once without one),
// and only when nothing more of the client's is buffered.
func (cc *conn) watch() {
	if cc.br.Buffered() > 0 || len(cc.src.pending) > 0 || cc.bgGot {
		return
	}
	cc.bg.Add(1)
	go func() {
		defer cc.bg.Done()
		n, err := cc.c.Read(cc.bgByte[:])
		if n == 1 {
			cc.bgGot = true // the next request's first byte
			return
		}
		if err != nil && !errors.Is(err, errAborted) && !isTimeout(err) {
			cc.bgGone = true
			cc.bgCancel()
		}
	}()
}

// errAborted is never returned: the watch is aborted with a past deadline.
var errAborted = errors.New("h1server: watch aborted")

// unwatch stops the background read and keeps the byte it read, if any.
func (cc *conn) unwatch() {
	_ = cc.c.SetReadDeadline(aLongTimeAgo)
	cc.bg.Wait()
	_ = cc.c.SetReadDeadline(time.Time{})
	if cc.bgGot {
		cc.bgGot = false
		cc.src.pending = append(cc.src.pending, cc.bgByte[0])
	}
}

var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
