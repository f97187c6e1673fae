package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/meshctl/meshctl/proxy/httpproxy"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// peekBuffers recycle the buffers detection reads a connection's first bytes
// into: small ones, which detection grows when a decision needs more bytes.
var peekBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// serverConn is an accepted client connection handed to an HTTP server. It
// replays the bytes detection read, counts bytes in metrics, notices the
// error replies net/http writes itself for malformed HTTP/1 requests and the
// requests that never arrive whole, and releases the connection from its
// listener's tracking when closed.
type serverConn struct {
	net.Conn
	side    *side
	info    *httpproxy.ConnInfo
	metrics *metrics.Conn

	// peeked and peekBuf are touched only by the reader (one goroutine at a time).
	peeked  []byte
	peekBuf *[]byte
	// replay are bytes already read and counted (by the HTTP/1 server,
	// which handed the connection to net/http's), replayed first.
	replay []byte
	// halfClosed: the proxy closed its writing half; nothing read after it
	// is a request that could time out.
	halfClosed atomic.Bool
	// early counts bytes read before metrics were opened (during a TLS
	// handshake, when the labels are not known yet).
	early int

	// handling counts the requests of this connection being handled now;
	// pending counts bytes read while none was (a request arriving). Both
	// matter only for HTTP/1.
	handling atomic.Int32
	pending  atomic.Int64
	// headerTimeout is set when the header read deadline expired with part of
	// a request read (a slowloris client); counted at Close. Every other way
	// a request's headers end early, net/http answers with a 400 itself.
	headerTimeout atomic.Bool
	// onReset cancels the request being handled when the connection is
	// reset (CancelOnReset); nil between requests.
	onReset atomic.Pointer[func()]

	closeOnce sync.Once
}

// RequestStarted is called when a request's headers have arrived whole.
func (c *serverConn) RequestStarted() {
	c.handling.Add(1)
	c.pending.Store(0)
}

// RequestFinished is called when a request's handler returns.
func (c *serverConn) RequestFinished() {
	c.onReset.Store(nil)
	c.handling.Add(-1)
}

// CancelOnReset has cancel called if the connection is reset while the
// current request is handled.
func (c *serverConn) CancelOnReset(cancel func()) { c.onReset.Store(&cancel) }

// clientGone reports whether a read error means the client is gone: a
// reset, or its end of the connection closed (EOF) unless half-closes are
// allowed (a client done sending that still wants its answer); not a
// deadline (a slow client).
func clientGone(err error, allowHalfClose bool) bool {
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && (!allowHalfClose || !errors.Is(err, io.EOF))
}

func (c *serverConn) Read(b []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	if len(c.peeked) > 0 {
		n := copy(b, c.peeked)
		c.peeked = c.peeked[n:]
		if len(c.peeked) == 0 {
			c.releasePeek()
		}
		c.read(n)
		return n, nil
	}
	n, err := c.Conn.Read(b)
	c.read(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.handling.Load() == 0 && !c.halfClosed.Load() && c.pending.Swap(0) > 0 {
		c.headerTimeout.Store(true)
	}
	if clientGone(err, c.side.p.cfg.AllowHalfClose) {
		if cancel := c.onReset.Load(); cancel != nil {
			(*cancel)()
		}
	}
	return n, err
}

// open sets the connection's labels and request info once they are known,
// and counts it open. It is called once, before the connection is served.
func (c *serverConn) open(labels metrics.ConnLabels, info *httpproxy.ConnInfo) {
	c.metrics = c.side.p.metrics.Open(labels)
	c.metrics.Read(c.early)
	info.Metrics = c.metrics
	c.info = info
}

func (c *serverConn) connInfo() *httpproxy.ConnInfo { return c.info }

func (c *serverConn) read(n int) {
	if n > 0 && c.metrics == nil {
		c.early += n
		return
	}
	if n > 0 {
		c.metrics.Read(n)
		if c.handling.Load() == 0 {
			c.pending.Add(int64(n))
		}
	}
}

func (c *serverConn) releasePeek() {
	if c.peekBuf != nil {
		*c.peekBuf = (*c.peekBuf)[:0]
		peekBuffers.Put(c.peekBuf)
		c.peekBuf, c.peeked = nil, nil
	}
}

// errorReplyHeaders follow the status line of the replies net/http writes
// straight to the connection, outside any handler, for requests it cannot
// parse (400, 431, 501). Proxied responses never look like this: net/http
// writes their headers sorted, with a Date.
const errorReplyHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *serverConn) Write(b []byte) (int, error) {
	if code, ok := errorReply(b); ok {
		c.pending.Store(0)
		c.metrics.ProtocolError("http1", strconv.Itoa(code))
	}
	n, err := c.Conn.Write(b)
	if n > 0 && c.metrics != nil {
		c.metrics.Write(n)
	}
	return n, err
}

// errorReply recognises net/http's own error replies and returns their status.
func errorReply(b []byte) (int, bool) {
	const prefix = "HTTP/1.1 "
	if len(b) < len(prefix)+3 || string(b[:len(prefix)]) != prefix || (b[len(prefix)] != '4' && b[len(prefix)] != '5') {
		return 0, false
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 || !bytes.HasPrefix(b[eol-1:], []byte(errorReplyHeaders)) {
		return 0, false
	}
	code, err := strconv.Atoi(string(b[len(prefix) : len(prefix)+3]))
	return code, err == nil
}

// CloseWrite lets a hijacked (upgraded) connection be half-closed.
func (c *serverConn) CloseWrite() error {
	c.halfClosed.Store(true)
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *serverConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.headerTimeout.Load() {
			c.metrics.ProtocolError("http1", "header_timeout")
		}
		if c.metrics != nil {
			c.metrics.Close()
		}
		c.side.release(c.Conn) // tracked by the accepted socket
	})
	return err
}

// meshedConn is the decrypted stream of a meshed connection, handed to the
// HTTP server as plaintext (it speaks prior-knowledge HTTP/2, as the ALPN
// agreed). Closing it closes the TLS connection and the accepted socket.
type meshedConn struct {
	meshtls.Plain
	sc *serverConn
	// peeked are bytes detection read from the stream, replayed first (read
	// by one goroutine at a time).
	peeked []byte
}

func (c *meshedConn) Read(b []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(b, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Plain.Read(b)
}

func (c *meshedConn) connInfo() *httpproxy.ConnInfo { return c.sc.info }

func (c *meshedConn) Close() error {
	err := c.Plain.Close()
	c.sc.Close()
	return err
}

// chanListener is a net.Listener whose connections are handed over by the
// accept loop after detection, so the HTTP/1 server only sees HTTP/1.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands a connection to the server; it fails once the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
