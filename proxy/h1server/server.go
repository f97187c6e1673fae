package h1server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/meshctl/meshctl/proxy/h1"
	"github.com/meshctl/meshctl/proxy/idlepoll"
)

// BufferSize is the size of a connection's read buffer while it has bytes
// in flight; a request head larger than this is handed off.
const BufferSize = 8 << 10

// Server serves HTTP/1.1 connections to Handler.
type Server struct {
	// Handler answers every request. Required.
	Handler http.Handler
	// ReadHeaderTimeout bounds the time from a request's first byte to the
	// end of its head. Default: 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for a keep-alive connection's next
	// request. Default: 90 s.
	IdleTimeout time.Duration
	// ConnContext, when set, makes the context of a connection's requests.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// HandOff takes a connection at a request this server does not serve
	// (see the package documentation), with the bytes read of it so far,
	// which begin with that request. Without it such a request is answered
	// 501 and the connection closed.
	HandOff func(c net.Conn, buffered []byte)
	// Refused, when set, hears of every head refused (and answered with
	// status) and why.
	Refused func(c net.Conn, status int, reason h1.Reason)
	// Log receives what goes wrong with a connection, at debug level.
	// Default: discard.
	Log *slog.Logger
	// ParkAfter is how long a keep-alive connection waits for its next
	// request in a goroutine of its own before it is handed to the
	// server's idle poller (proxy/idlepoll), where it waits without one.
	// Default: 100 ms; negative: never.
	ParkAfter time.Duration
	// HandOffAfter is how long the goroutine that answered a request waits
	// for the connection's next one, its stack as deep as the handler made
	// it, before it hands the wait to a new goroutine with the smallest
	// stack (and ends). A busy connection's next request usually comes
	// sooner, and is served without a new goroutine's stack growing again
	// through the handler. Default: 20 ms; negative: at once.
	HandOffAfter time.Duration
	// ClientGone decides whether an error reading the connection while a
	// handler runs means the client is gone, and the request's context is
	// to be cancelled. Default: every error but a timeout (as net/http);
	// a server that lets clients half-close says no to EOF. Either way the
	// connection serves no further request.
	ClientGone func(err error) bool

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutting bool
	wg       sync.WaitGroup
	// idle is the poller of connections parked while idle; made at the
	// first park, closed when the server is.
	idle     *idlepoll.Poller
	noPoller bool // making one failed
}

// readers are the buffers of connections with bytes in flight, and
// requests the parsed heads of the requests being served.
var (
	readers  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, BufferSize) }}
	requests = sync.Pool{New: func() any { return new(h1.Request) }}
)

// ErrServerClosed is returned by Shutdown's waits and refused connections
// once the server is shutting down.
var ErrServerClosed = errors.New("h1server: server closed")

// ReadCounter is a connection that counts the bytes read from it: when
// ServeConn reads its socket directly (waiting for a request through
// syscall.Conn, not through Read), it tells it what it read.
type ReadCounter interface {
	CountRead(n int)
}

// ServeConn serves c until it closes or is handed off; buffered are bytes
// already read from c (detection's), served first. It returns when it is
// done with c, or when c first waits for a request: a new goroutine waits
// (see loop), and serves c to its end. Shutdown waits for every connection.
func (s *Server) ServeConn(c net.Conn, buffered []byte) {
	cc := &conn{s: s, c: c}
	cc.src.conn = cc
	if len(buffered) > 0 {
		cc.src.pending = append([]byte(nil), buffered...)
	}
	if rc, ok := c.(syscall.Conn); ok {
		cc.raw, _ = rc.SyscallConn()
	}
	cc.counter, _ = c.(ReadCounter)
	if !s.track(cc) {
		c.Close()
		return
	}
	cc.serve()
}

func (s *Server) track(cc *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(cc *conn) {
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops the server taking connections, closes the idle ones now
// and every other once its current response is written, and waits for them
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	// Every connection is marked before any idle one is closed: a handler
	// that answers meanwhile says Connection: close.
	for cc := range s.conns {
		cc.markClosing()
	}
	for cc := range s.conns {
		cc.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// Nothing parks once shutting; whatever is still parked when ctx ends
	// is woken (and closed) by the poller's Close.
	defer s.closePoller()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poller returns the server's idle poller, made on first use; nil when
// parking is off, the server is shutting down or the poller cannot be made.
func (s *Server) poller() *idlepoll.Poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ParkAfter < 0 || s.shutting || s.noPoller {
		return nil
	}
	if s.idle == nil {
		p, err := idlepoll.New()
		if err != nil {
			s.debug("no idle poller: idle connections keep a goroutine", "error", err)
			s.noPoller = true
			return nil
		}
		s.idle = p
	}
	return s.idle
}

// Parked returns the number of connections waiting in the idle poller now,
// with no goroutine.
func (s *Server) Parked() int {
	s.mu.Lock()
	p := s.idle
	s.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.Parked()
}

func (s *Server) closePoller() {
	s.mu.Lock()
	p := s.idle
	s.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

func (s *Server) parkAfter() time.Duration {
	if s.ParkAfter > 0 {
		return s.ParkAfter
	}
	return 100 * time.Millisecond
}

// Close closes every connection at once.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutting = true
	for cc := range s.conns {
		cc.mu.Lock()
		if !cc.handedOff {
			cc.c.Close()
			cc.unpark()
		}
		cc.mu.Unlock()
	}
	s.mu.Unlock()
	s.closePoller()
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return 10 * time.Second
}

func (s *Server) handOffAfter() time.Duration {
	switch {
	case s.HandOffAfter < 0:
		return 0
	case s.HandOffAfter > 0:
		return s.HandOffAfter
	}
	return 20 * time.Millisecond
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 90 * time.Second
}

func (s *Server) debug(msg string, args ...any) {
	if s.Log != nil {
		s.Log.Debug(msg, args...)
	}
}

// conn is one connection being served.
type conn struct {
	s       *Server
	c       net.Conn
	raw     syscall.RawConn // nil when c is not a socket
	counter ReadCounter     // c's, if it has one
	// readable, waitErr and tryOnly serve waitRequest's wait on raw.
	readable func(fd uintptr) bool
	waitErr  error
	tryOnly  bool
	src      source
	br       *bufio.Reader // nil while idle
	req      *h1.Request   // the head being served; nil while idle
	bw       *bufio.Writer // nil between responses

	// mu guards state and handedOff against Shutdown.
	mu        sync.Mutex
	state     connState
	handedOff bool
	// idleAtShutdown: the connection was waiting for a request when
	// Shutdown marked it.
	idleAtShutdown bool
	// parked: the connection waits in the server's idle poller, with no
	// goroutine (see park); wait is its place there.
	parked bool
	wait   idlepoll.Waiter
	idle   *idlepoll.Poller // where it parked last; guarded by mu
	// idleUntil is when the current wait for a request ends.
	idleUntil time.Time

	remoteAddr string
	ctx        context.Context

	// The background read while a handler runs (see watch).
	bg       sync.WaitGroup
	bgByte   [1]byte
	bgGot    bool
	bgGone   bool
	bgCancel context.CancelFunc
}

type connState uint8

const (
	stateIdle connState = iota
	stateActive
	stateClosing // answer the current request, then close
)

// markClosing has the connection close after its current response.
func (cc *conn) markClosing() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.state == stateIdle && !cc.handedOff {
		cc.idleAtShutdown = true
	}
	cc.state = stateClosing
}

// closeIfIdle closes the connection if it was idle when marked.
func (cc *conn) closeIfIdle() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.idleAtShutdown && !cc.handedOff {
		cc.c.Close()
		cc.unpark()
	}
}

// unpark ends the connection (already closed) if it is parked in the idle
// poller; cc.mu is held.
func (cc *conn) unpark() {
	if cc.parked && cc.idle.Unpark(&cc.wait) {
		cc.parked = false
		go cc.resume(net.ErrClosed)
	}
}

// setState moves between idle and active; false when the connection is to
// close instead.
func (cc *conn) setState(st connState) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.state == stateClosing {
		return false
	}
	cc.state = st
	return true
}

func (cc *conn) closing() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.state == stateClosing
}

// serve reads and answers requests until the connection ends.
func (cc *conn) serve() {
	cc.remoteAddr = cc.c.RemoteAddr().String()
	cc.ctx = context.Background()
	if cc.s.ConnContext != nil {
		cc.ctx = cc.s.ConnContext(cc.ctx, cc.c)
	}
	cc.loop(false)
}

// errWouldBlock: nothing to read yet (nothing came within HandOffAfter).
var errWouldBlock = errors.New("h1server: nothing to read yet")

// errParked: the connection waits in the idle poller; resume goes on.
var errParked = errors.New("h1server: parked in the idle poller")

// loop serves requests until the connection ends. When the connection has
// to wait for its next request, the goroutine that served the last one
// (its stack grown by the handler) waits HandOffAfter, then hands the wait
// to a new goroutine,
// whose stack is the smallest the runtime makes, and ends: an idle
// connection holds a minimal stack and no buffer. If the wait lasts
// ParkAfter, that goroutine too hands the connection to the idle poller
// and ends (see park). parked says this goroutine is one that took over a
// wait.
func (cc *conn) loop(parked bool) {
	done := true
	defer func() {
		if done {
			cc.end()
		}
	}()
	for {
		if cc.br == nil || cc.br.Buffered() == 0 {
			cc.release()
			if !cc.setState(stateIdle) {
				return
			}
			if !parked {
				cc.idleUntil = time.Now().Add(cc.s.idleTimeout())
			}
			err := cc.waitRequest(!parked)
			if errors.Is(err, errWouldBlock) {
				done = false
				go cc.loop(true)
				return
			}
			if errors.Is(err, errParked) {
				done = false
				return
			}
			parked = false
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
					cc.s.debug("connection ended while idle", "client", cc.remoteAddr, "error", err)
				}
				return
			}
		}
		if !cc.setState(stateActive) {
			return
		}
		if !cc.serveRequest() {
			return
		}
	}
}

// release returns the connection's read buffer to the pool.
func (cc *conn) release() {
	if cc.br != nil {
		cc.br.Reset(nil)
		readers.Put(cc.br)
		cc.br = nil
	}
	if cc.req != nil {
		requests.Put(cc.req)
		cc.req = nil
	}
}

// waitRequest waits, holding no buffer, until the connection has bytes
// (or ends), and reads them into a pooled buffer. With handOff the wait
// lasts HandOffAfter at most: errWouldBlock says nothing came meanwhile
// (the caller hands the wait to a goroutine with a smaller stack).
func (cc *conn) waitRequest(handOff bool) error {
	deadline := cc.idleUntil
	try, linger := false, false
	var idle *idlepoll.Poller
	onSocket := cc.raw != nil && len(cc.src.pending) == 0
	switch {
	case handOff && onSocket && cc.s.handOffAfter() > 0:
		deadline, linger = earliest(deadline, time.Now().Add(cc.s.handOffAfter())), true
	case handOff:
		try = true
	case onSocket:
		if idle = cc.s.poller(); idle != nil {
			deadline = earliest(deadline, time.Now().Add(cc.s.parkAfter()))
		}
	}
	if err := cc.c.SetReadDeadline(deadline); err != nil {
		return err
	}
	err := cc.read(try)
	timedOut := errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(cc.idleUntil)
	switch {
	case linger && timedOut:
		return errWouldBlock
	case idle != nil && timedOut:
		return cc.park(idle)
	}
	return err
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// park hands the idle connection to the poller: errParked, and resume
// serves it when it is readable; or the error that ends it.
func (cc *conn) park(idle *idlepoll.Poller) error {
	cc.mu.Lock()
	if cc.state == stateClosing {
		cc.mu.Unlock()
		return ErrServerClosed
	}
	if cc.wait.Wake == nil {
		cc.wait.Wake = cc.resume // made once: a method value allocates
	}
	err := idle.Park(&cc.wait, cc.raw, cc.idleUntil)
	if err == nil {
		cc.parked, cc.idle = true, idle
	}
	cc.mu.Unlock()
	if err == nil {
		return errParked
	}
	if errors.Is(err, idlepoll.ErrClosed) {
		cc.s.poisonPoller(idle)
	}
	// Wait here instead, for the rest of the idle time, without cc.mu:
	// Shutdown and Close take it (and close the connection to end this).
	if err := cc.c.SetReadDeadline(cc.idleUntil); err != nil {
		return err
	}
	return cc.read(false)
}

// poisonPoller stops handing connections to p, a poller that closed
// itself (its wait failed): they would each wait ParkAfter for nothing.
func (s *Server) poisonPoller(p *idlepoll.Poller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle == p && !s.shutting {
		s.noPoller = true
		s.debug("idle poller failed: idle connections keep a goroutine")
	}
}

// resume is the idle poller's wake-up: it goes on serving the connection
// when it is readable, or ends it (err).
func (cc *conn) resume(err error) {
	cc.mu.Lock()
	cc.parked = false
	cc.mu.Unlock()
	if err == nil {
		cc.loop(true)
		return
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
		cc.s.debug("connection ended while parked", "client", cc.remoteAddr, "error", err)
	}
	cc.end()
}

// end is the connection's last step: its buffers go back, it is closed
// unless handed off, and the server forgets it.
func (cc *conn) end() {
	cc.release()
	if !cc.handedOff {
		cc.c.Close()
	}
	cc.s.untrack(cc)
}

// read fills the connection's buffer (see waitRequest) under the read
// deadline set.
func (cc *conn) read(try bool) error {
	cc.br = readers.Get().(*bufio.Reader)
	cc.br.Reset(&cc.src)
	if len(cc.src.pending) > 0 || cc.raw == nil {
		_, err := cc.br.Peek(1)
		return err
	}
	// The buffer goes back to the pool each time the socket has nothing;
	// the read that finds bytes fills it.
	cc.release()
	if cc.readable == nil {
		cc.readable = cc.readWhenReadable // made once: a method value allocates
	}
	cc.waitErr, cc.tryOnly = nil, try
	if err := cc.raw.Read(cc.readable); err != nil {
		return err
	}
	return cc.waitErr
}

// readWhenReadable is waitRequest's RawConn.Read callback: it reads the
// socket into a pooled buffer, or gives the buffer back and waits (false)
// when there is nothing yet.
func (cc *conn) readWhenReadable(fd uintptr) bool {
	br := readers.Get().(*bufio.Reader)
	br.Reset(&cc.src)
	cc.src.fd, cc.src.direct = int(fd), true
	_, err := br.Peek(1)
	cc.src.direct = false
	if errors.Is(err, syscall.EAGAIN) {
		br.Reset(nil)
		readers.Put(br)
		if cc.tryOnly {
			cc.waitErr = errWouldBlock
			return true
		}
		return false
	}
	cc.br, cc.waitErr = br, err
	return true
}
