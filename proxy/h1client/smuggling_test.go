package h1client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A trailer name added while the body streams (as net/http's HTTP/2
// server adds undeclared ones) cannot inject a request after the body.
func TestSmugglingTrailerName(t *testing.T) {
	wire := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		b, _ := io.ReadAll(c)
		wire <- string(b)
	})
	c := newClient(t, Config{})
	body := &keyAdder{r: strings.NewReader("abc")}
	req, _ := http.NewRequest("POST", "http://"+addr, body)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-T": nil}
	body.trailer = req.Trailer
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c.RoundTrip(req.WithContext(ctx))
	if w := <-wire; strings.Contains(w, "\r\nGET /admin") {
		t.Errorf("wire:\n%q", w)
	}
}

type keyAdder struct {
	r       io.Reader
	trailer http.Header
}

func (b *keyAdder) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.trailer["X-T\r\n\r\nGET /admin HTTP/1.1\r\nX"] = []string{"1"}
	}
	return n, err
}
func (b *keyAdder) Close() error { return nil }
