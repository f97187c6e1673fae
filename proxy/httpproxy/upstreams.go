package httpproxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// upstreamConns tracks the connections dialed to upstreams, so that shutdown
// can close them all: the transports only close idle ones, and an HTTP/2
// connection whose streams were just cancelled may not be idle yet.
type upstreamConns struct {
	dialer *net.Dialer

	// mu guards conns.
	mu    sync.Mutex
	conns map[*upstreamConn]struct{}
}

func (u *upstreamConns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := u.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	uc := &upstreamConn{Conn: c, set: u}
	u.mu.Lock()
	u.conns[uc] = struct{}{}
	u.mu.Unlock()
	return uc, nil
}

// closeAll closes every upstream connection still open.
func (u *upstreamConns) closeAll() {
	u.mu.Lock()
	conns := make([]*upstreamConn, 0, len(u.conns))
	for c := range u.conns {
		conns = append(conns, c)
	}
	u.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// upstreamConn leaves its set when closed.
type upstreamConn struct {
	net.Conn
	set  *upstreamConns
	once sync.Once
}

func (c *upstreamConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.conns, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn reaches the socket under the connection, which the HTTP/1
// client peeks at before it reuses a kept-alive connection.
func (c *upstreamConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
