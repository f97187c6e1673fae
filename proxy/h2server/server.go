package h2server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Config configures a Server.
type Config struct {
	// Handler serves each request. Required.
	Handler http.Handler
	// MaxConcurrentStreams is advertised to clients; a stream beyond it is
	// refused. Default: 250.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request head; a larger one is answered 431
	// without calling the handler. Default: 1 MiB.
	MaxHeaderBytes int
	// StreamWindow and ConnWindow are the flow-control windows granted to
	// clients for request bodies. Defaults: 1 MiB each.
	StreamWindow, ConnWindow uint32
	// IdleTimeout closes (with GOAWAY) a connection without streams for
	// this long. Default: none.
	IdleTimeout time.Duration
	// WriteTimeout fails a connection whose socket writes block this long
	// (a client that does not read). A client that reads but grants no
	// flow-control window holds its handlers in Write without limit, as
	// with net/http's server. Default: 30s.
	WriteTimeout time.Duration
	// GoAwayTimeout is how long a connection stays open after its GOAWAY,
	// so that the GOAWAY reaches the client before the close (see
	// conn.waitClosed and conn.linger). Default: 1s, net/http's.
	GoAwayTimeout time.Duration
	// CountError, if set, is told of each protocol error by a short token
	// (x/net's names: "over_max_streams", "headers_even", …).
	CountError func(token string)
	// Log receives handler panics. Default: discard.
	Log *slog.Logger
	// NoYield makes the writer flush at once instead of yielding first.
	NoYield bool
	// WorkerIdle is how long a goroutine that ran a stream's handler waits
	// for another stream's before it ends (see workers). Default: 1 s;
	// negative: a goroutine per stream.
	WorkerIdle time.Duration
}

func (c Config) withDefaults() Config {
	if c.WorkerIdle == 0 {
		c.WorkerIdle = time.Second
	}
	if c.GoAwayTimeout <= 0 {
		c.GoAwayTimeout = time.Second
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 250
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = 1 << 20
	}
	if c.ConnWindow < initialWindow {
		c.ConnWindow = 1 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.CountError == nil {
		c.CountError = func(string) {}
	}
	return c
}

const (
	initialWindow = 65535
	maxData       = 16384 - 9
	// maxCtrl bounds the control frames queued for the writer: a client
	// that floods PINGs or SETTINGS without reading the answers is cut off.
	maxCtrl = 1000
	// prefaceTimeout bounds the wait for a client's preface;
	// firstSettingsTimeout the wait for its SETTINGS after it (net/http's).
	prefaceTimeout       = 10 * time.Second
	firstSettingsTimeout = 2 * time.Second
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Server serves HTTP/2 connections handed to it with ServeConn.
type Server struct {
	cfg Config

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	drained  chan struct{} // closed when the last connection ends after Shutdown

	workers *workers
}

// New returns a Server.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg, conns: map[*conn]struct{}{}, workers: newWorkers(cfg.WorkerIdle)}
}

// ErrServerClosed is returned by ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("h2server: server closed")

// ServeConn serves HTTP/2 on nc (the client's preface comes first) until
// the connection ends, and closes it. Requests' contexts derive from ctx.
// It blocks: the calling goroutine reads the connection.
func (srv *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	cfg := &srv.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{srv: srv, nc: nc, ctx: ctx, cancel: cancel, remote: nc.RemoteAddr().String(),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		streams: map[uint32]*stream{}, sendConn: initialWindow, recvConn: int64(cfg.ConnWindow)}
	c.peer.initWindow = initialWindow
	c.out.Conn, c.out.Timeout = nc, cfg.WriteTimeout
	c.fr = http2.NewFramer(&c.out, nc)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = uint32(cfg.MaxHeaderBytes) + 320
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)

	if cfg.IdleTimeout > 0 {
		c.idleSince = time.Now()
		c.idleTimer = time.AfterFunc(cfg.IdleTimeout, c.idleCheck)
	}
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		_ = nc.Close()
		return ErrServerClosed
	}
	srv.conns[c] = struct{}{}
	srv.mu.Unlock()
	defer srv.forget(c)

	if err := c.start(); err != nil {
		_ = nc.Close()
		return err
	}
	go c.writeLoop()
	err := c.readLoop()
	c.close(err)
	return err
}

// start reads the client's preface and sends the server's settings.
func (c *conn) start() error {
	cfg := &c.srv.cfg
	_ = c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	buf := make([]byte, len(preface))
	if _, err := io.ReadFull(c.nc, buf); err != nil {
		return fmt.Errorf("h2server: reading the client's preface: %w", err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(firstSettingsTimeout))
	if !bytes.Equal(buf, []byte(preface)) {
		cfg.CountError("bad_preface")
		return errors.New("h2server: not an HTTP/2 client preface")
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: cfg.StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.fr.MaxHeaderListSize},
	)
	if err == nil && cfg.ConnWindow > initialWindow {
		err = c.fr.WriteWindowUpdate(0, cfg.ConnWindow-initialWindow)
	}
	if err == nil {
		err = c.out.Flush()
	}
	return err
}

// forget takes an ended connection out of the server's books.
func (srv *Server) forget(c *conn) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	delete(srv.conns, c)
	if srv.shutdown && len(srv.conns) == 0 && srv.drained != nil {
		close(srv.drained)
		srv.drained = nil
	}
}

// Shutdown sends every connection GOAWAY, lets the streams in flight
// finish, and returns when every connection has ended or ctx has; then
// what is left is closed.
func (srv *Server) Shutdown(ctx context.Context) error {
	defer srv.workers.close()
	srv.mu.Lock()
	srv.shutdown = true
	drained := srv.drained // a Shutdown already waiting
	if drained == nil && len(srv.conns) > 0 {
		drained = make(chan struct{})
		srv.drained = drained
	}
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo, nil)
	}
	if drained == nil {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		srv.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once.
func (srv *Server) Close() {
	srv.workers.close()
	srv.mu.Lock()
	srv.shutdown = true
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	for _, c := range conns {
		c.close(ErrServerClosed)
	}
}
