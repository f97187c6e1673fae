package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/meshctl/meshctl/proxy/h1"
)

// The sizes of the buffers a connection takes from the pools while a
// response is read or a request written.
const (
	readBufferSize  = 8 << 10
	writeBufferSize = 8 << 10
)

// maxInformational bounds the 1xx responses skipped before the final one.
const maxInformational = 5

// writeWait is how long a response that arrived before its request's body
// was all sent waits, at its end, for the body's writer before the
// connection is given up (as net/http's Transport does).
const writeWait = 50 * time.Millisecond

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
	heads   = sync.Pool{New: func() any { return new(h1.Response) }}
)

var (
	// errStale is a request that met a connection its upstream had closed,
	// when nothing of it can have been processed: it goes on another.
	errStale = errors.New("h1client: the upstream closed a kept-alive connection before the request was processed")
	// ErrHeadTooLarge is a response head over MaxResponseHeaderBytes.
	ErrHeadTooLarge = errors.New("h1client: response head too large")
	// ErrUnexpectedSwitch is a 101 answer to a request that asked for no
	// upgrade.
	ErrUnexpectedSwitch = errors.New("h1client: 101 Switching Protocols to a request without Upgrade")
	// ErrTooManyInformational is more than maxInformational 1xx responses.
	ErrTooManyInformational = errors.New("h1client: too many 1xx responses")
)

// conn is a connection to one upstream, idle in the pool or carrying one
// exchange.
type conn struct {
	client *Client
	addr   string
	c      net.Conn
	raw    syscall.RawConn // nil when c is no socket: it is not peeked at
	w      countingWriter

	// peek and interrupt are made once: a method value allocates.
	peek      func(fd uintptr) bool
	interrupt func()
	peekBuf   [1]byte
	open      bool

	reused    bool
	idleSince time.Time

	br    *bufio.Reader // while a response is read
	grown bool          // br is a one-off, larger one
}

func newConn(c *Client, addr string, nc net.Conn) *conn {
	cc := &conn{client: c, addr: addr, c: nc}
	cc.w.c = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cc.raw = raw
			cc.peek = cc.peekAt
		}
	}
	cc.interrupt = cc.interruptNow
	return cc
}

// stillOpen reports whether the idle connection can carry a request: its
// upstream has neither closed it nor sent anything unasked.
func (cc *conn) stillOpen() bool {
	if cc.raw == nil {
		return true
	}
	cc.open = false
	if err := cc.raw.Read(cc.peek); err != nil {
		return false
	}
	return cc.open
}

// peekAt is stillOpen's look at the socket: a one-byte MSG_PEEK that does
// not wait. Nothing to read is the only good answer.
func (cc *conn) peekAt(fd uintptr) bool {
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&cc.peekBuf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		cc.open = errno == syscall.EAGAIN
		return true
	}
}

// interruptNow ends what the connection is doing: its request's context
// is done.
func (cc *conn) interruptNow() { _ = cc.c.SetDeadline(time.Unix(1, 0)) }

func (cc *conn) close() {
	cc.releaseReader()
	_ = cc.c.Close()
}

func (cc *conn) releaseReader() {
	if cc.br != nil && !cc.grown {
		cc.br.Reset(nil)
		readers.Put(cc.br)
	}
	cc.br, cc.grown = nil, false
}

// countingWriter counts what reached the connection: a request of which
// nothing was written can go on another connection.
type countingWriter struct {
	c net.Conn
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.c.Write(p)
	w.n += int64(n)
	return n, err
}

// exchange is one request and its response on a connection.
type exchange struct {
	cc        *conn
	req       *http.Request
	ctx       context.Context
	stop      func() bool // stops the context's interrupt
	hasBody   bool
	keepAlive bool
	// wrote is closed when the request body's writer is done, with
	// writeErr set.
	wrote    chan struct{}
	writeErr error
	scratch  [20]byte // chunk-size lines
	body     body
}

// roundTrip sends req on cc and reads the head of its response.
func (cc *conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	ex := &exchange{cc: cc, req: req, ctx: ctx, hasBody: req.Body != nil && req.Body != http.NoBody}
	ex.stop = context.AfterFunc(ctx, cc.interrupt)
	f := framingOf(req, ex.hasBody)
	ex.keepAlive = !f.close
	cc.w.n = 0
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(&cc.w)
	writeHead(bw, req, f)
	if ex.hasBody {
		ex.wrote = make(chan struct{})
		go ex.writeBody(bw, f)
	} else {
		err := bw.Flush()
		bw.Reset(nil)
		writers.Put(bw)
		if err != nil {
			return nil, ex.fail(err, false)
		}
	}
	res, answered, err := ex.readResponse()
	if err != nil {
		return nil, ex.fail(err, answered)
	}
	return res, nil
}

// fail ends an exchange that got no response: the connection is closed,
// and the error says why (the request's context, when it is done), or
// that the request can go on another connection (errStale).
func (ex *exchange) fail(err error, answered bool) error {
	cc := ex.cc
	ex.stop()
	cc.close()
	if ex.hasBody {
		select {
		case <-ex.wrote:
			var be *bodyError
			if errors.As(ex.writeErr, &be) {
				err = be // the client's body broke off: the better reason
			}
		default:
		}
	}
	if cerr := ex.ctx.Err(); cerr != nil {
		return cerr
	}
	if cc.reused && !ex.hasBody && (cc.w.n == 0 || (!answered && idempotent(ex.req))) {
		return errStale
	}
	return err
}

// finish ends an exchange whose response was read to its end (ok) or
// given up: the connection goes back to the pool only if it can carry
// another.
func (ex *exchange) finish(ok bool) {
	cc := ex.cc
	ok = ex.stop() && ok && ex.keepAlive && !cc.grown && cc.br.Buffered() == 0
	if ex.hasBody && ok {
		ok = ex.waitWriter()
	}
	cc.releaseReader()
	if ok {
		cc.client.put(cc)
	} else {
		cc.close()
	}
}

// waitWriter reports whether the request's body was all written, waiting
// briefly for its writer when the response came first.
func (ex *exchange) waitWriter() bool {
	select {
	case <-ex.wrote:
		return ex.writeErr == nil
	default:
	}
	t := time.NewTimer(writeWait)
	defer t.Stop()
	select {
	case <-ex.wrote:
		return ex.writeErr == nil
	case <-t.C:
		return false
	}
}

// readResponse reads the final response's head, skipping 1xx ones.
// answered says whether any byte of a response came.
func (ex *exchange) readResponse() (res *http.Response, answered bool, err error) {
	cc := ex.cc
	cc.br = readers.Get().(*bufio.Reader)
	cc.br.Reset(cc.c)
	head := heads.Get().(*h1.Response)
	defer heads.Put(head)
	isHead := ex.req.Method == http.MethodHead
	for informational := 0; ; informational++ {
		n, err := cc.readHead(head, isHead, &answered)
		switch {
		case err != nil:
			return nil, answered, err
		case head.Status >= 200:
			res := ex.response(head)
			_, _ = cc.br.Discard(n)
			ex.startBody(res, head)
			return res, true, nil
		case head.Status == http.StatusSwitchingProtocols:
			return nil, true, ErrUnexpectedSwitch
		case informational == maxInformational:
			return nil, true, ErrTooManyInformational
		}
		_, _ = cc.br.Discard(n)
	}
}

// readHead reads until the buffer holds a whole response head and parses
// it; it returns the head's length.
func (cc *conn) readHead(head *h1.Response, isHead bool, answered *bool) (int, error) {
	limit := cc.client.cfg.MaxResponseHeaderBytes
	scanned := 0
	for {
		buf, _ := cc.br.Peek(cc.br.Buffered())
		if len(buf) > 0 && (scanned == 0 || h1.MayEndHead(buf[max(0, scanned-2):])) {
			n, err := head.Parse(buf, isHead)
			if err == nil && n > limit {
				return 0, ErrHeadTooLarge
			}
			if !errors.Is(err, h1.ErrIncomplete) {
				return n, err
			}
		}
		scanned = len(buf)
		if len(buf) >= limit {
			return 0, ErrHeadTooLarge
		}
		if cc.br.Buffered() == cc.br.Size() {
			if cc.br.Size() >= limit {
				return 0, ErrHeadTooLarge
			}
			cc.grow(limit)
			continue
		}
		if _, err := cc.br.Peek(cc.br.Buffered() + 1); err != nil {
			*answered = *answered || cc.br.Buffered() > 0
			if err == io.EOF && cc.br.Buffered() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		*answered = true
	}
}

// grow moves what is buffered into a one-off buffer of size bytes: a head
// larger than the pooled buffers is rare.
func (cc *conn) grow(size int) {
	buffered, _ := cc.br.Peek(cc.br.Buffered())
	rest := bytes.Clone(buffered)
	cc.releaseReader()
	cc.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), cc.c), size)
	cc.grown = true
}

// idempotent reports whether a request can be sent twice without harm.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}
