package admin

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

// tlsHandshake is the first byte of a TLS connection: a record of type
// handshake (RFC 8446 §5.1). No HTTP request starts with it.
const tlsHandshake = 0x16

// access decides who may use the sensitive endpoints.
type access struct {
	controller spiffeid.ID
	log        *slog.Logger
	// warnings limits the refusal lines: a client hammering the admin port
	// must not flood the log.
	warnings *rate.Sometimes
}

// only serves h to loopback plaintext clients and to the controller over
// mutual TLS, and answers 403 to everyone else.
func (a access) only(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := a.refusal(r); why != "" {
			a.warnings.Do(func() { a.log.Warn("admin request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", why) })
			http.Error(w, "forbidden: "+why, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refusal says why r may not use a sensitive endpoint, or "" when it may.
func (a access) refusal(r *http.Request) string {
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c == nil {
		if r.TLS != nil {
			// TLS terminated by a server that is not this package's: its
			// client certificates were not checked against the trust roots.
			return "this endpoint is served over the admin port's own mutual TLS only"
		}
	} else if cs, ok := c.tlsState(); ok {
		id, err := meshtls.PeerID(cs)
		switch {
		case !cs.HandshakeComplete:
			return "the TLS handshake is not complete"
		case err != nil:
			return fmt.Sprintf("the client certificate carries no SPIFFE ID: %v", err)
		case a.controller == (spiffeid.ID{}):
			return "this proxy knows no control-plane identity to accept over TLS"
		case id != a.controller:
			return fmt.Sprintf("over TLS only the control plane (%s) may use this endpoint, not %s", a.controller, id)
		}
		return ""
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "unknown client address"
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Unmap().IsLoopback() {
		return "in plaintext only loopback may use this endpoint; use 'meshctl tap' or 'meshctl identity show', which go through the admin.meshctl.io API"
	}
	return ""
}

// connKey carries a *conn in a request's context.
type connKey struct{}

// withConn is the admin server's ConnContext.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if dc, ok := c.(*conn); ok {
		return context.WithValue(ctx, connKey{}, dc)
	}
	return ctx
}

// listener hands out connections that find out on their first read whether
// the client speaks TLS.
type listener struct {
	net.Listener
	tls *tls.Config // nil: TLS clients are turned away
}

// Accept returns the next connection, undecided.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, cfg: l.tls}, nil
}

// conn is an accepted admin connection that becomes a TLS server connection
// when its first byte starts a handshake, and stays plaintext otherwise. The
// decision is made on the first Read, under the deadline the HTTP server set
// for the request's headers, so a slow client never blocks Accept. The
// embedded deadlines act on the underlying socket, and so on TLS too.
type conn struct {
	net.Conn
	cfg *tls.Config

	once sync.Once
	// tc, once set, carries every Read, Write and Close.
	tc atomic.Pointer[tls.Conn]
	// first and err are written by detect, inside once; then read only by
	// the goroutine reading the connection.
	first []byte
	err   error
}

func (c *conn) detect() {
	b := make([]byte, 1)
	if _, err := c.Conn.Read(b); err != nil {
		c.err = err
		return
	}
	if b[0] != tlsHandshake {
		c.first = b
		return
	}
	if c.cfg == nil {
		c.err = fmt.Errorf("TLS on the admin port needs the proxy's identity")
		return
	}
	c.tc.Store(tls.Server(&replay{Conn: c.Conn, first: b}, c.cfg))
}

// Read reads the first bytes to decide, then plaintext or TLS.
func (c *conn) Read(p []byte) (int, error) {
	c.once.Do(c.detect)
	if tc := c.tc.Load(); tc != nil {
		return tc.Read(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Write writes plaintext or TLS; it waits for the decision (the HTTP server
// never writes first).
func (c *conn) Write(p []byte) (int, error) {
	c.once.Do(c.detect)
	if tc := c.tc.Load(); tc != nil {
		return tc.Write(p)
	}
	return c.Conn.Write(p)
}

// Close closes the TLS connection (sending close_notify) or the socket; it
// never waits for the decision.
func (c *conn) Close() error {
	if tc := c.tc.Load(); tc != nil {
		return tc.Close()
	}
	return c.Conn.Close()
}

// tlsState is the connection's TLS state, and whether it is TLS at all. A
// complete handshake verified the client's certificate (AdminServerConfig).
func (c *conn) tlsState() (tls.ConnectionState, bool) {
	tc := c.tc.Load()
	if tc == nil {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// replay gives back the byte detection read before the rest of the socket.
type replay struct {
	net.Conn
	first []byte // read only by the TLS connection's reader
}

func (r *replay) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
