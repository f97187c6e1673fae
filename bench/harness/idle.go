package harness

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"time"
)

// openIdle opens n keep-alive connections, sends one request on each so the
// proxy holds a real HTTP connection, and leaves them idle.
func openIdle(n int, addr string) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")); err != nil {
			return conns, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return conns, fmt.Errorf("connection %d: %w", i, err)
		}
		resp.Body.Close()
		c.SetDeadline(time.Time{})
	}
	return conns, nil
}
