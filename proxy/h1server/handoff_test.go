package h1server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestHandOffAfterDefault: with HandOffAfter unset (the proxy's
// setting), a request that comes right after the last is served by the
// goroutine that served the last. (Default 20 ms; made 0 by mistake, no
// other test notices.)
func TestHandOffAfterDefault(t *testing.T) {
	ids := make(chan string, 2)
	s := &Server{ParkAfter: -1, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ids <- goroutineID() })}
	addr, _ := serve(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Both requests in one write would be pipelined (served from the
	// buffer): the second is written once the first's answer is read.
	same := 0
	for range 10 {
		roundTrip(t, c, br)
		first := <-ids
		roundTrip(t, c, br)
		if second := <-ids; second == first {
			same++
		}
	}
	// Without the wait a second request is served by the same goroutine
	// only when its bytes beat the hand-off (a few percent of the time).
	if same < 6 {
		t.Errorf("%d of 10 requests right after the last one served by the same goroutine: no wait of HandOffAfter by default", same)
	}
}

// TestIdleTimeoutShorterThanHandOffAfter: the wait of HandOffAfter
// ends at the idle timeout when that comes first: the connection is
// closed at IdleTimeout, not at HandOffAfter.
func TestIdleTimeoutShorterThanHandOffAfter(t *testing.T) {
	s := &Server{ParkAfter: -1, IdleTimeout: 50 * time.Millisecond, HandOffAfter: 3 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	addr, _ := serve(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF && !os.IsTimeout(err) {
		t.Logf("read: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("idle connection closed after %v, IdleTimeout is 50ms", d)
	}
}

// TestShutdownDuringTheHandOffWait: Shutdown while the goroutine
// that answered waits HandOffAfter closes the connection at once and
// returns; so does Close.
func TestShutdownDuringTheHandOffWait(t *testing.T) {
	for _, how := range []string{"Shutdown", "Close"} {
		t.Run(how, func(t *testing.T) {
			s := &Server{HandOffAfter: time.Hour, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
			addr, _ := serve(t, s)
			conns, readers := openKeepAlive(t, addr, 3)
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				if how == "Close" {
					s.Close()
					done <- nil
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				done <- s.Shutdown(ctx)
			}()
			for i := range conns {
				expectClosed(t, conns[i], readers[i])
			}
			if err := <-done; err != nil {
				t.Errorf("%s: %v", how, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s took %v with connections in the hand-off wait", how, d)
			}
		})
	}
}
