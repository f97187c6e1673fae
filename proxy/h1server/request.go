package h1server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
		case errors.As(err, &herr) && herr.Reason == h1.ReasonTargetForm && cc.connect():
			// h1 leaves CONNECT's authority form to net/http, once its
			// fields have passed the strict checks.
			if err := cc.checkConnect(); err != nil {
				if errors.As(err, &herr) {
					cc.refuse(herr.Status, herr.Reason)
				}
				return false
			}
			cc.handOff()
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
	r := cc.req
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
	w := &response{cc: cc, req: req, body: body, header: make(http.Header), keepAlive: r.KeepAlive,
		head: req.Method == http.MethodHead, http11: r.ProtoAtLeast11()}
	cc.bgCancel = cancel
	if body == nil {
		cc.watch()
	} else {
		body.onEOF = cc.watch
	}
	panicked := cc.runHandler(w, req)
	// Nothing reads the connection from here on but this goroutine: a
	// body read still in flight (a transport streaming it after an early
	// answer) and the background read are cut off by a past deadline, and
	// the body refuses new reads.
	bodyWhole := cc.stopReaders(body)
	cc.bgCancel = nil // the request's context is not kept while idle
	if panicked {
		w.abandon()
		return false
	}
	if !w.finish() || cc.bgGone || !w.keepAlive {
		if !bodyWhole {
			cc.closeGracefully()
		}
		return false
	}
	if body != nil {
		// The client gets as long to send the rest as it would get to send
		// a head.
		_ = cc.c.SetReadDeadline(time.Now().Add(cc.s.readHeaderTimeout()))
		if !body.drain() {
			if !isTimeout(body.err) {
				// Unread bytes may be on their way: closed with them, the
				// connection would be reset under the answer. A client that
				// stopped sending has none.
				cc.closeGracefully()
			}
			return false
		}
	}
	return !cc.closing()
}

// runHandler runs the handler; true when it panicked. A panic ends the
// request and the connection, as in net/http: http.ErrAbortHandler (an
// upstream that broke its response off) quietly, any other logged.
func (cc *conn) runHandler(w *response, req *http.Request) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				if cc.s.Log != nil {
					cc.s.Log.Error("handler panicked", "client", cc.remoteAddr, "panic", v, "stack", string(buf))
				}
			}
		}
	}()
	cc.s.Handler.ServeHTTP(w, req)
	return false
}

// stopReaders cuts off whatever still reads the connection once the
// handler has returned (see serveRequest) and reports whether the request
// body was read whole (true without one).
func (cc *conn) stopReaders(b *body) bool {
	if b != nil {
		b.closed.Store(true)
	}
	_ = cc.c.SetReadDeadline(aLongTimeAgo)
	whole := true
	if b != nil {
		b.mu.Lock()
		b.onEOF = nil
		if b.chunked == nil && isTimeout(b.err) {
			// Our own cut-off, not the client's doing: the buffer is intact
			// and the rest can still be drained.
			b.err = nil
		}
		whole = errors.Is(b.err, io.EOF)
		b.mu.Unlock()
	}
	cc.bg.Wait()
	_ = cc.c.SetReadDeadline(time.Time{})
	if cc.bgGot {
		cc.bgGot = false
		cc.src.pending = append(cc.src.pending, cc.bgByte[0])
	}
	return whole
}

// closeGracefully ends a connection the client may still be sending a
// request body on: closing it with unread bytes would reset it, and the
// reset can destroy the response before the client reads it. It closes
// the writing half, and reads (and drops) for a moment before the caller
// closes it.
func (cc *conn) closeGracefully() {
	cw, ok := cc.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = cc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, cc.c) // bounded by time: a fast uploader sends 256 KiB in milliseconds
}

// readHead reads until the buffer holds a whole head and parses it into
// cc.req; it returns the head's length.
func (cc *conn) readHead() (int, error) {
	if cc.req == nil {
		cc.req = requests.Get().(*h1.Request)
	}
	scanned := 0
	for {
		buf, _ := cc.br.Peek(cc.br.Buffered())
		// A head arriving in pieces is parsed again only once a piece may
		// have ended it (a blank line): a client that trickles a head a byte
		// at a time costs a scan per byte, not a parse of all it sent.
		if scanned == 0 || h1.MayEndHead(buf[max(0, scanned-2):]) {
			n, err := cc.req.Parse(buf)
			if !errors.Is(err, h1.ErrIncomplete) {
				return n, err
			}
		}
		scanned = len(buf)
		if cc.br.Buffered() == cc.br.Size() {
			// A full buffer is parsed once more whatever the scan said: a
			// head too large for it still has its strict refusals.
			if _, err := cc.req.Parse(buf); !errors.Is(err, h1.ErrIncomplete) {
				var herr *h1.Error
				if errors.As(err, &herr) {
					return 0, err
				}
			}
			return 0, errTooLarge
		}
		if _, err := cc.br.Peek(cc.br.Buffered() + 1); err != nil {
			return 0, err
		}
	}
}

// checkConnect reads the rest of a CONNECT head in authority form and
// holds its fields to the strict checks, by parsing the same head with an
// origin-form target.
func (cc *conn) checkConnect() error {
	for {
		buf, _ := cc.br.Peek(cc.br.Buffered())
		if h1.MayEndHead(buf) {
			line, rest, _ := bytes.Cut(buf, []byte("\n"))
			version := line[bytes.LastIndexByte(line, ' ')+1:]
			head := make([]byte, 0, len(buf)+8)
			head = append(append(append(head, "CONNECT / "...), version...), '\n')
			head = append(head, rest...)
			var r h1.Request
			_, err := r.Parse(head)
			return err
		}
		if cc.br.Buffered() == cc.br.Size() {
			return nil // too large for the buffer: net/http's limit decides
		}
		if _, err := cc.br.Peek(cc.br.Buffered() + 1); err != nil {
			return err
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
	rest := append(append([]byte(nil), buffered...), cc.src.pending...)
	cc.src.pending = nil
	cc.release()
	_ = cc.c.SetReadDeadline(time.Time{})
	cc.mu.Lock()
	cc.handedOff = true // serve's deferred close, and Shutdown, leave it alone
	if cc.idle != nil {
		// Parked before: its new owner gets it without our registration.
		cc.idle.Forget(&cc.wait, cc.raw)
	}
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
	r := cc.req
	header, target, host := h1.Header(r.Fields, r.Target, r.Host)
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
	delete(req.Header, "Transfer-Encoding") // in TransferEncoding, as net/http has it
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

// body is a request body read from the connection's buffer. Its mutex
// serialises reads: a transport may still be reading it in another
// goroutine when the handler returns.
type body struct {
	cc      *conn
	chunked *h1.ChunkedReader
	mu      sync.Mutex
	left    int64 // Content-Length bytes not read yet; -1 when chunked
	err     error
	onEOF   func()
	closed  atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
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

// Close stops the handler's reads; what is left is drained or the
// connection closed once the handler returns.
func (b *body) Close() error {
	b.closed.Store(true)
	return nil
}

// drainable reports whether what is left of the body is known to be small
// enough to drain after the handler (a chunked body's rest is not known).
// A read in flight (a transport still streaming the body while the answer
// starts) makes it unknown: the mutex is not waited for.
func (b *body) drainable() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return errors.Is(b.err, io.EOF) || b.err == nil && b.chunked == nil && b.left <= maxDrainBytes
}

// drain reads what the handler left of the body, up to maxDrainBytes;
// false when the connection cannot carry another request. It runs once
// nothing else reads the body.
func (b *body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if errors.Is(b.err, io.EOF) {
		return true
	}
	if b.err != nil {
		return false
	}
	n, err := io.Copy(io.Discard, io.LimitReader(readerFunc(b.readLocked), maxDrainBytes+1))
	return n <= maxDrainBytes && (err == nil || errors.Is(err, io.EOF)) && errors.Is(b.err, io.EOF)
}

// readerFunc is a function that reads.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// watch reads the connection in the background while the handler runs, as
// net/http does, to cancel the request when the client goes away. It is
// started once the request's body has been read (or at once without one).
// With a pipelined request already buffered it reads what comes after it:
// a byte it gets goes after everything buffered (stopReaders), and a client
// gone still cancels the request being served.
func (cc *conn) watch() {
	if cc.bgGot {
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
		if err != nil && !isTimeout(err) {
			cc.bgGone = true
			if gone := cc.s.ClientGone; gone == nil || gone(err) {
				cc.bgCancel()
			}
		}
	}()
}

var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
