package proxy

// Each test in this file was written (by an adversarial review) against a
// defect it demonstrated: the comment above a test describes the defect it
// fails on.
import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Bytes read before a hand-off to net/http are counted once.
func TestHandedOffBytesCountedOnce(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := outboundTo(t, app)
	req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("b", 9000) + "\r\n\r\n"
	before := metricValue(scrape(t, p), "tcp_read_bytes_total", nil)
	if got := rawExchange(t, p.outbound(), []byte(req), false); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("answer %.40q", got)
	}
	eventually(t, "the connection to close", 5*time.Second, func() bool {
		return metricValue(scrape(t, p), "tcp_open_connections", nil) == 0
	})
	if d := metricValue(scrape(t, p), "tcp_read_bytes_total", nil) - before; d != float64(len(req)) {
		t.Errorf("tcp_read_bytes_total rose by %v for a %d-byte request", d, len(req))
	}
}

// A slow upload answered early (Connection: close) is not a header timeout.
func TestGracefulCloseIsNoHeaderTimeout(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusRequestEntityTooLarge) }))
	p := outboundTo(t, app)
	labels := map[string]string{"direction": "outbound", "protocol": "http1", "error": "header_timeout"}
	before := metricValue(scrape(t, p), "protocol_error_total", labels)
	c, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("a", 1000))
	go func() {
		for range 30 {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write(make([]byte, 100)); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, "the connection to close", 5*time.Second, func() bool {
		return metricValue(scrape(t, p), "tcp_open_connections", nil) == 0
	})
	if d := metricValue(scrape(t, p), "protocol_error_total", labels) - before; d != 0 {
		t.Errorf("answered %d, then header_timeout counted %v time(s)", res.StatusCode, d)
	}
}

// A closed connection is forgotten by its side.
func TestSideForgetsClosedConnections(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := outboundTo(t, app)
	for range 5 {
		rawExchange(t, p.outbound(), []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), false)
	}
	eventually(t, "the connections to close", 5*time.Second, func() bool {
		return metricValue(scrape(t, p), "tcp_open_connections", nil) == 0
	})
	s := p.p.sides[0]
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("side.conns holds %d connections, all closed", n)
	}
}
