package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzHTTP1Request throws arbitrary bytes at a running proxy as the start of
// an HTTP/1 request. Whatever arrives, the proxy answers with a well-formed
// status line or closes the connection, and keeps serving (a panic anywhere
// in it would crash this test).
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
	p := startProxy(f, Config{
		Outbound:          &SideConfig{Listen: "127.0.0.1:0", Upstream: up},
		ReadHeaderTimeout: 200 * time.Millisecond,
		DetectTimeout:     100 * time.Millisecond,
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
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return // closed without an answer: fine for garbage
		}
		if !strings.HasPrefix(line, "HTTP/1.") || len(line) < 12 {
			// Opaque input is forwarded as bytes; the upstream answers HTTP.
			t.Fatalf("answer starts %q", line)
		}
	})
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
