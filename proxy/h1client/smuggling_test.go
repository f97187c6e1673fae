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

// Trailers set while the body streams (net/http's HTTP/2 server adds
// undeclared ones; a handler may set any value) cannot inject a request
// after the body, by their names or by their values.
func TestTrailersCannotSmuggle(t *testing.T) {
	for name, set := range map[string]func(http.Header){
		"name":  func(h http.Header) { h["X-T\r\n\r\nGET /admin HTTP/1.1\r\nX"] = []string{"1"} },
		"value": func(h http.Header) { h.Set("X-T", "v\r\n\r\nGET /admin HTTP/1.1\r\nInjected: 1") },
	} {
		t.Run(name, func(t *testing.T) {
			wire := make(chan string, 1)
			addr := rawServer(t, func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				b, _ := io.ReadAll(c)
				wire <- string(b)
			})
			c := newClient(t, Config{})
			req, _ := http.NewRequest("POST", "http://"+addr, nil)
			req.ContentLength = -1
			req.Trailer = http.Header{"X-T": nil}
			req.Body = &trailerSetter{r: strings.NewReader("abc"), set: func() { set(req.Trailer) }}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c.RoundTrip(req.WithContext(ctx))
			if w := <-wire; strings.Contains(w, "GET /admin") {
				t.Errorf("wire:\n%q", w)
			} else if !strings.Contains(w, "3\r\nabc\r\n0\r\n") {
				t.Errorf("the body was not sent: %q", w)
			}
		})
	}
}

// trailerSetter is a body that calls set when it ends.
type trailerSetter struct {
	r   io.Reader
	set func()
}

func (b *trailerSetter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.set()
	}
	return n, err
}
func (b *trailerSetter) Close() error { return nil }
