package h1server

// Each test in this file was written (by an adversarial review) against a
// defect it demonstrated: the comment above a test describes the defect it
// fails on.
import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kills "no Connection: keep-alive for HTTP/1.0": a 1.0 client needs the header.
func TestHTTP10KeepAliveHeader(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if res, _ := readResponse(t, br, "GET"); !strings.EqualFold(res.Header.Get("Connection"), "keep-alive") {
		t.Errorf("HTTP/1.0 keep-alive answered without Connection: keep-alive: %v", res.Header)
	}
}

// Kills "the drain re-arms the watch": a body left unread and drained to
// its end must not let a background read take the next request's byte.
func TestTheDrainDoesNotRearmTheWatch(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	readResponse(t, br, "POST")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, br, "GET")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "POST /1,GET /2" {
		t.Errorf("the handler saw %q", seen)
	}
}

// Kills "no overlap when scanning for the head's end".
func TestSplitHeadEnd(t *testing.T) {
	s := &Server{ReadHeaderTimeout: 2 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	defer s.Close()
	for _, pieces := range [][]string{
		{"GET / HTTP/1.1\r\nHost: a\r\n", "\r\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", "\n"},
		{"GET / HTTP/1.1\r\nHost: a\n", "\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n", "\n"}, // bare-LF blank line: refused at once
	} {
		if got, took := writePieces(t, s, pieces); !strings.HasPrefix(got, "HTTP/1.1 ") || took > time.Second {
			t.Errorf("%q: %q after %s", pieces, got, took)
		}
	}
}

// Kills "no graceful close": the client is still sending a large body and
// reads the answer only a little later.
func TestAnUnreadUploadDoesNotResetTheAnswer(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not reading that")
	})})
	c, br := dial(t, addr)
	go func() {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n")
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	res, body := readResponse(t, br, "POST")
	if !res.Close || body != "not reading that" {
		t.Errorf("got %q, close %v", body, res.Close)
	}
}
