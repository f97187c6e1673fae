package proxy

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/meshctl/meshctl/proxy/detect"
	"github.com/meshctl/meshctl/proxy/httpproxy"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// peekBuffers recycle the buffers detection reads a connection's first bytes into.
var peekBuffers = sync.Pool{New: func() any { b := make([]byte, 0, detect.MaxPeek); return &b }}

// serverConn is an accepted client connection handed to an HTTP server. It
// replays the bytes detection read, counts bytes in metrics, notices the
// error replies net/http writes itself for malformed requests, and releases
// the connection from its listener's tracking when closed.
type serverConn struct {
	net.Conn
	side    *side
	info    *httpproxy.ConnInfo
	metrics *metrics.Conn

	// peeked and peekBuf are touched only by the reader (one goroutine at a time).
	peeked  []byte
	peekBuf *[]byte

	// state is the http.ConnState the HTTP/1 server last reported.
	state atomic.Int32
	// replied is set once net/http answered a malformed request itself.
	replied   atomic.Bool
	closeOnce sync.Once
}

func (c *serverConn) Read(b []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(b, c.peeked)
		c.peeked = c.peeked[n:]
		if len(c.peeked) == 0 {
			c.releasePeek()
		}
		c.metrics.Read(n)
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.metrics.Read(n)
	}
	return n, err
}

func (c *serverConn) releasePeek() {
	if c.peekBuf != nil {
		*c.peekBuf = (*c.peekBuf)[:0]
		peekBuffers.Put(c.peekBuf)
		c.peekBuf, c.peeked = nil, nil
	}
}

// errorReplyPrefix starts the replies net/http writes straight to the
// connection, outside any handler, for requests it cannot parse (400, 431, 501).
var errorReplyPrefix = []byte("HTTP/1.1 ")

func (c *serverConn) Write(b []byte) (int, error) {
	if http.ConnState(c.state.Load()) != http.StateActive && bytes.HasPrefix(b, errorReplyPrefix) && len(b) >= 12 {
		if code, err := strconv.Atoi(string(b[9:12])); err == nil && code >= 400 {
			c.replied.Store(true)
			c.side.p.metrics.ProtocolError(c.side.name, "http1", strconv.Itoa(code))
		}
	}
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.metrics.Write(n)
	}
	return n, err
}

// CloseWrite lets a hijacked (upgraded) connection be half-closed.
func (c *serverConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *serverConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.metrics.Close()
		c.side.release(c)
	})
	return err
}

// connState follows the HTTP/1 server's view of each connection. A connection
// that closes before its first request was ever read whole, without net/http
// having answered it, sent an incomplete request: a slowloris client that hit
// the header timeout, or one that hung up mid-headers.
func (s *side) connState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*serverConn)
	if !ok {
		return
	}
	prev := http.ConnState(c.state.Swap(int32(state)))
	if state == http.StateClosed && prev == http.StateNew && !c.replied.Load() {
		s.p.metrics.ProtocolError(s.name, "http1", "incomplete_request")
	}
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
