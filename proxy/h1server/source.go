package h1server

import (
	"io"
	"syscall"
)

// source is what a connection's buffer reads from: bytes read before
// (detection's, or the background read's byte), then the connection; while
// waiting for a request, the socket itself, without blocking.
type source struct {
	conn    *conn
	pending []byte
	fd      int
	direct  bool
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil
		}
		return n, nil
	}
	if s.direct {
		for {
			n, err := syscall.Read(s.fd, p)
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				return 0, err
			case n == 0:
				return 0, io.EOF
			}
			if s.conn.counter != nil {
				s.conn.counter.CountRead(n)
			}
			return n, nil
		}
	}
	return s.conn.c.Read(p)
}
