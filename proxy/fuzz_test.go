package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzHTTP1Request throws arbitrary bytes at a running proxy as the start of
// an HTTP/1 request. Whatever arrives, the proxy answers with a well-formed
// status line (never 500: an answer the proxy makes up for its own
// failure) or closes the connection, keeps serving, and never panics: a
// handler's panic, which net/http recovers and logs, fails the run.
func FuzzHTTP1Request(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /x HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	up := backend(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	panics := &panicCatcher{}
	p := startProxy(f, Config{
		Outbound:          &SideConfig{Listen: "127.0.0.1:0", Upstream: up},
		ReadHeaderTimeout: 200 * time.Millisecond,
		DetectTimeout:     100 * time.Millisecond,
		Log:               slog.New(panics),
	})
	addr := p.outbound()
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("the proxy stopped accepting: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		// Read to the end: net/http logs a handler's panic before it
		// closes the connection.
		answer, _ := io.ReadAll(c)
		if msg := panics.take(); msg != "" {
			t.Fatalf("the proxy panicked on %q: %s", in, msg)
		}
		line, err := bufio.NewReader(bytes.NewReader(answer)).ReadString('\n')
		if err != nil {
			return // closed without an answer: fine for garbage
		}
		// Opaque input is forwarded as bytes; the upstream answers HTTP.
		var major, minor, code int
		if n, _ := fmt.Sscanf(line, "HTTP/%d.%d %d ", &major, &minor, &code); n != 3 || major != 1 || code < 100 || code > 599 {
			t.Fatalf("answer starts %q: not an HTTP/1 status line", line)
		}
		if code == http.StatusInternalServerError {
			t.Fatalf("answer %q to %q: the proxy failed on its own account", line, in)
		}
	})
}

// panicCatcher is a slog handler that keeps the first "panic serving"
// line net/http logs (through the proxy's servers' ErrorLog) when a
// handler panics with anything but http.ErrAbortHandler.
type panicCatcher struct {
	mu  sync.Mutex
	msg string
}

func (h *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicCatcher) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *panicCatcher) WithGroup(string) slog.Handler            { return h }
func (h *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.mu.Lock()
		if h.msg == "" {
			h.msg = r.Message
		}
		h.mu.Unlock()
	}
	return nil
}

// take returns the panic seen since the last call, if any.
func (h *panicCatcher) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := h.msg
	h.msg = ""
	return msg
}

func FuzzErrorReply(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request" + errorReplyHeaders + "400 Bad Request"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		code, ok := errorReply(b)
		if ok && (code < 400 || code > 599) {
			t.Fatalf("errorReply(%q) = %d", b, code)
		}
	})
}
