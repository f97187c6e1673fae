// Package tcpproxy forwards opaque byte streams between a client and an
// upstream in both directions, keeping half-closes: when one side finishes
// sending, the other side's write half is shut and the reverse direction
// carries on. Between TCP sockets Go's io.Copy uses splice(2), so the bytes
// never enter user space.
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Pipe copies client→upstream and upstream→client until both directions are
// done, then closes both connections. peeked holds bytes already read from
// the client (during protocol detection); they are sent upstream first. It
// returns the bytes sent upstream (including peeked) and downstream.
func Pipe(client, upstream net.Conn, peeked []byte) (up, down int64, err error) {
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if len(peeked) > 0 {
			n, err := upstream.Write(peeked)
			up += int64(n)
			if err != nil {
				upErr = err
				abort(client, upstream)
				return
			}
		}
		n, err := io.Copy(upstream, client)
		up += n
		upErr = err
		if err != nil {
			abort(client, upstream)
			return
		}
		closeWrite(upstream)
	}()
	down, downErr := io.Copy(client, upstream)
	if downErr != nil {
		abort(client, upstream)
	} else {
		closeWrite(client)
	}
	wg.Wait()
	client.Close()
	upstream.Close()
	return up, down, errors.Join(upErr, downErr)
}

// closeWrite shuts the write half so the peer reads EOF, or closes the
// connection when it has no write half.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}

// abort closes both connections so that the other direction's copy returns.
func abort(a, b net.Conn) {
	a.Close()
	b.Close()
}
