package h2client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Config configures a Client.
type Config struct {
	// Dial connects to addr ("host:port") and returns a connection that
	// speaks HTTP/2 (a TLS connection whose handshake agreed on it).
	// Required. Its errors are returned as they are, so a caller can tell a
	// connection that could not be made from a request that failed on one.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Key adds to a request's address what else its connection must match
	// (the peer identity it has to prove); requests share connections only
	// when both are equal. Optional.
	Key func(ctx context.Context) string
	// StreamWindow and ConnWindow are the flow-control windows granted to
	// the server: how much of a response (and of all the connection's
	// responses) it may send ahead of the reader. Defaults: 1 MiB, 4 MiB.
	StreamWindow, ConnWindow uint32
	// MaxHeaderListSize bounds a response head (RFC 9113's size: names,
	// values, 32 bytes a field). Default: 1 MiB.
	MaxHeaderListSize uint32
	// IdleConnTimeout closes a connection without streams for this long.
	// Default: 90s.
	IdleConnTimeout time.Duration
	// SendPingTimeout pings a connection that read nothing for this long;
	// PingTimeout closes it when the answer takes longer. Defaults: 30s,
	// 10s.
	SendPingTimeout, PingTimeout time.Duration
	// WriteTimeout fails a connection whose writes block this long (a peer
	// that does not read). Default: 30s.
	WriteTimeout time.Duration
	// NoYield makes the writer flush at once instead of yielding first (to
	// measure the yield).
	NoYield bool
}

func (c Config) withDefaults() Config {
	if c.StreamWindow == 0 {
		c.StreamWindow = 1 << 20
	}
	if c.ConnWindow == 0 {
		c.ConnWindow = 4 << 20
	}
	if c.ConnWindow < initialWindow {
		c.ConnWindow = initialWindow
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 1 << 20
	}
	if c.IdleConnTimeout <= 0 {
		c.IdleConnTimeout = 90 * time.Second
	}
	if c.SendPingTimeout <= 0 {
		c.SendPingTimeout = 30 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	return c
}

// Errors a request can fail with.
var (
	// ErrUnprocessed is a request the server did not process (refused, or
	// above a GOAWAY's last stream, or never written before its connection
	// failed): it is safe to send again, elsewhere.
	ErrUnprocessed = errors.New("h2client: request not processed by the server")
	// ErrNotConnected is a request whose connection failed before the
	// server's first frame (its TLS handshake refused by the server, most
	// often): nothing was sent, and sending it again to the same server is
	// pointless.
	ErrNotConnected = errors.New("h2client: connection failed before the server spoke")
	// ErrClosed is a request sent after Close.
	ErrClosed = errors.New("h2client: client closed")
)

// Client sends HTTP/2 requests over pooled connections. It is an
// http.RoundTripper; use one for many peers, concurrently.
type Client struct {
	cfg Config

	// mu guards the fields below.
	mu      sync.Mutex
	conns   map[string][]*conn
	dialing map[string]*dialCall
	closed  bool
}

// dialCall is a connection being dialed; requests that find every
// connection of their key full wait for it.
type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
}

// New returns a Client.
func New(cfg Config) *Client {
	return &Client{cfg: cfg.withDefaults(), conns: map[string][]*conn{}, dialing: map[string]*dialCall{}}
}

// RoundTrip sends req to req.URL.Host and returns its response, whose body
// the caller must read to its end or close. The request's body is closed,
// as http.RoundTripper requires, possibly after RoundTrip returns.
func (cl *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	key := addr
	if cl.cfg.Key != nil {
		key += "|" + cl.cfg.Key(ctx)
	}
	fields, err := requestFields(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	noBody := req.Body == nil || req.Body == http.NoBody
	for attempt := 0; ; attempt++ {
		c, err := cl.get(ctx, key, addr)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		res, err := c.roundTrip(req, fields, noBody)
		if err != nil && errors.Is(err, ErrUnprocessed) && noBody && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// get returns a connection of key with a stream slot reserved for the
// caller, dialing one when every connection is full.
func (cl *Client) get(ctx context.Context, key, addr string) (*conn, error) {
	for {
		cl.mu.Lock()
		if cl.closed {
			cl.mu.Unlock()
			return nil, ErrClosed
		}
		for _, c := range cl.conns[key] {
			if c.reserve() {
				cl.mu.Unlock()
				return c, nil
			}
		}
		if d := cl.dialing[key]; d != nil {
			cl.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		cl.dialing[key] = d
		cl.mu.Unlock()

		nc, err := cl.cfg.Dial(ctx, addr)
		var c *conn
		if err == nil {
			c, err = newConn(cl, key, nc)
		}
		cl.mu.Lock()
		delete(cl.dialing, key)
		d.c, d.err = c, err
		reserved := false
		if err == nil {
			if cl.closed {
				err = ErrClosed
				d.err = err
				c.close(ErrClosed)
			} else {
				cl.conns[key] = append(cl.conns[key], c)
				reserved = c.reserve()
			}
		}
		cl.mu.Unlock()
		close(d.done)
		if err != nil {
			return nil, err
		}
		if !reserved {
			// A connection just made that takes no stream (its server's
			// limit is 0): dialing again would only repeat it.
			return nil, fmt.Errorf("%w: a new connection to %s takes no stream", ErrNotConnected, addr)
		}
		return c, nil
	}
}

// remove takes c out of the pool: it failed, closed, or takes no new
// streams.
func (cl *Client) remove(c *conn) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	list := cl.conns[c.key]
	for i, x := range list {
		if x == c {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(cl.conns, c.key)
	} else {
		cl.conns[c.key] = list
	}
}

// Close closes every connection, in use or not; requests on them fail.
func (cl *Client) Close() {
	cl.mu.Lock()
	cl.closed = true
	var all []*conn
	for _, list := range cl.conns {
		all = append(all, list...)
	}
	cl.conns = map[string][]*conn{}
	cl.mu.Unlock()
	for _, c := range all {
		c.close(ErrClosed)
	}
}

// CloseIdleConnections closes the connections without streams.
func (cl *Client) CloseIdleConnections() {
	cl.mu.Lock()
	var all []*conn
	for _, list := range cl.conns {
		all = append(all, list...)
	}
	cl.mu.Unlock()
	for _, c := range all {
		c.closeIfIdle()
	}
}

// closeBody closes a request's body that will not be sent.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
