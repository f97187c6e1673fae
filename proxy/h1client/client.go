package h1client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Config configures a Client.
type Config struct {
	// Dial connects to an upstream's "host:port". Required. Its errors are
	// returned as they are, so a caller can tell a connection that could
	// not be made from a request that failed on one.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Fallback sends the requests this client does not: upgrades, requests
	// that expect 100-continue, CONNECT. Required.
	Fallback http.RoundTripper
	// MaxIdleConnsPerHost bounds the kept-alive connections per upstream.
	// Default: 64; negative keeps none.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes connections idle this long. Default: 90s.
	IdleConnTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response head; a larger one fails
	// the request. Default: 64 KiB.
	MaxResponseHeaderBytes int
}

// Client sends HTTP/1.1 requests over kept-alive connections. It is an
// http.RoundTripper; use one for many upstreams, concurrently.
type Client struct {
	cfg Config

	// mu guards the fields below.
	mu     sync.Mutex
	idle   map[string][]*conn // by address, the most recently used last
	count  int                // connections in idle
	sweep  *time.Timer        // closes expired idle connections; armed while count > 0
	armed  bool
	closed bool
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.MaxIdleConnsPerHost == 0 {
		cfg.MaxIdleConnsPerHost = 64
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = 64 << 10
	}
	c := &Client{cfg: cfg, idle: map[string][]*conn{}}
	c.sweep = time.AfterFunc(time.Hour, c.expire)
	c.sweep.Stop()
	return c
}

// ErrClosed is a request sent after Close.
var ErrClosed = errors.New("h1client: client closed")

// RoundTrip sends req and returns its response, whose body the caller must
// read to its end or close. The request's body is closed, as
// http.RoundTripper requires, possibly after RoundTrip returns.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if handedOver(req) {
		return c.cfg.Fallback.RoundTrip(req)
	}
	if err := check(req); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	addr := hostPort(req.URL.Host)
	for {
		if err := ctx.Err(); err != nil {
			closeBody(req)
			return nil, err
		}
		cc, err := c.get(ctx, addr)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		res, err := cc.roundTrip(ctx, req)
		if errors.Is(err, errStale) {
			continue // nothing of it was processed: on another connection
		}
		return res, err
	}
}

// handedOver reports whether req is one for the fallback: an upgrade, a
// request that waits for 100 Continue before its body, or CONNECT.
func handedOver(req *http.Request) bool {
	return req.Method == http.MethodConnect || len(req.Header["Upgrade"]) > 0 ||
		(len(req.Header["Expect"]) > 0 && httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue"))
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// hostPort is addr with the default port when it has none.
func hostPort(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i < 0 || strings.IndexByte(addr[i:], ']') >= 0 {
		return net.JoinHostPort(strings.Trim(addr, "[]"), "80")
	}
	return addr
}

// get returns an idle connection to addr that is still open, or a new one.
func (c *Client) get(ctx context.Context, addr string) (*conn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		list := c.idle[addr]
		if len(list) == 0 {
			c.mu.Unlock()
			break
		}
		cc := list[len(list)-1]
		list[len(list)-1] = nil
		// An emptied list stays for the next put (the sweep deletes it).
		c.idle[addr] = list[:len(list)-1]
		c.count--
		c.mu.Unlock()
		if now.Sub(cc.idleSince) < c.cfg.IdleConnTimeout && cc.stillOpen() {
			cc.reused = true
			return cc, nil
		}
		cc.close()
	}
	nc, err := c.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return newConn(c, addr, nc), nil
}

// put keeps cc for another request to its upstream, or closes it when the
// pool is full.
func (c *Client) put(cc *conn) {
	cc.idleSince = time.Now()
	c.mu.Lock()
	if c.closed || len(c.idle[cc.addr]) >= c.cfg.MaxIdleConnsPerHost {
		c.mu.Unlock()
		cc.close()
		return
	}
	c.idle[cc.addr] = append(c.idle[cc.addr], cc)
	c.count++
	if !c.armed {
		c.armed = true
		c.sweep.Reset(c.cfg.IdleConnTimeout)
	}
	c.mu.Unlock()
}

// expire closes the connections idle longer than IdleConnTimeout, and
// looks again when the next would expire.
func (c *Client) expire() {
	now := time.Now()
	var expired []*conn
	c.mu.Lock()
	var next time.Time
	for addr, list := range c.idle {
		n := 0
		for n < len(list) && now.Sub(list[n].idleSince) >= c.cfg.IdleConnTimeout {
			n++
		}
		expired = append(expired, list[:n]...)
		if n == len(list) {
			clear(list)
			delete(c.idle, addr) // the map keeps only upstreams with idle connections
			continue
		}
		rest := append(list[:0], list[n:]...)
		clear(list[len(rest):]) // no hold on the closed ones
		c.idle[addr] = rest
		if at := rest[0].idleSince.Add(c.cfg.IdleConnTimeout); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	c.count -= len(expired)
	c.armed = c.count > 0 && !c.closed
	if c.armed {
		c.sweep.Reset(max(next.Sub(now), time.Millisecond))
	}
	c.mu.Unlock()
	for _, cc := range expired {
		cc.close()
	}
}

// Idle reports how many connections wait in the pool.
func (c *Client) Idle() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// CloseIdleConnections closes the connections waiting in the pool.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.count = map[string][]*conn{}, 0
	c.mu.Unlock()
	for _, list := range idle {
		for _, cc := range list {
			cc.close()
		}
	}
}

// Close closes the idle connections and keeps none from now on; requests
// sent after it fail with ErrClosed. Connections in use are the caller's
// to close (through its Dial).
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.sweep.Stop()
	c.mu.Unlock()
	c.CloseIdleConnections()
}
