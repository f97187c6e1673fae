package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTP1KeepAliveReusesOneUpstreamConnection sends many requests over
// one client connection; the upstream must see them on one connection too.
func TestHTTP1KeepAliveReusesOneUpstreamConnection(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]int{}
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr]++
		mu.Unlock()
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	p := outboundTo(t, up)
	c := h1Client()
	for i := range 20 {
		resp, err := c.Get(fmt.Sprintf("http://%s/r%d", p.outbound(), i))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp.Body); body != fmt.Sprintf("hello /r%d", i) {
			t.Fatalf("body %q", body)
		}
		resp.Body.Close()
	}
	if len(remotes) != 1 {
		t.Errorf("upstream saw %d connections (%v), want 1 reused", len(remotes), remotes)
	}
}

// TestHTTP1ChunkedBodiesStreamBothWays sends a chunked request body and gets
// a chunked response, and shows the response is not held back until complete.
func TestHTTP1ChunkedBodiesStreamBothWays(t *testing.T) {
	release := make(chan struct{})
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
			http.Error(w, fmt.Sprintf("transfer encoding %v", r.TransferEncoding), 400)
			return
		}
		w.Write([]byte("first:" + string(body) + "\n"))
		w.(http.Flusher).Flush()
		<-release // the client must have the first chunk before the rest is written
		w.Write([]byte("second\n"))
	}))
	p := outboundTo(t, up)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("part1-"))
		pw.Write([]byte("part2"))
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.outbound()+"/", pr)
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != -1 {
		t.Fatalf("status %d, length %d; want a streamed 200", resp.StatusCode, resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first:part1-part2\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(release)
	if rest := readAll(t, br); rest != "second\n" {
		t.Errorf("rest %q", rest)
	}
}

// TestHTTP1ExpectContinue: an upstream that refuses a request before reading
// its body answers without the client ever sending it; one that accepts gets it.
func TestHTTP1ExpectContinue(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Allow") == "" {
			w.WriteHeader(http.StatusExpectationFailed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(body))
	}))
	p := outboundTo(t, up)

	for _, allow := range []bool{false, true} {
		conn, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		hdr := "POST /upload HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
		if allow {
			hdr += "X-Allow: yes\r\n"
		}
		conn.Write([]byte(hdr + "\r\n"))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		status, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !allow {
			if !strings.HasPrefix(status, "HTTP/1.1 417") {
				t.Errorf("refused upload: first line %q, want 417 without a 100", status)
			}
			conn.Close()
			continue
		}
		if !strings.HasPrefix(status, "HTTP/1.1 100") {
			t.Fatalf("accepted upload: first line %q, want 100 Continue", status)
		}
		br.ReadString('\n') // blank line after the 100
		conn.Write([]byte("hello"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp.Body); resp.StatusCode != 200 || body != "got 5 bytes" {
			t.Errorf("accepted upload: %d %q", resp.StatusCode, body)
		}
		conn.Close()
	}
}

// TestHopByHopHeadersStopAtTheProxy: Connection-listed and hop-by-hop
// headers are not forwarded either way; end-to-end ones are.
func TestHopByHopHeadersStopAtTheProxy(t *testing.T) {
	var got http.Header
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "1")
	}))
	p := outboundTo(t, up)
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.outbound()+"/", nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Keep", "yes")
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"X-Hop", "Proxy-Connection", "Connection"} {
		if v := got.Get(h); v != "" {
			t.Errorf("upstream got hop-by-hop %s: %q", h, v)
		}
	}
	if got.Get("X-Keep") != "yes" || got.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("end-to-end headers lost or changed: %v", got)
	}
	if resp.Header.Get("X-Up-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End") != "1" {
		t.Errorf("response headers: %v", resp.Header)
	}
}

// TestLargeBodiesAreNotBufferedWhole: the upstream writes 1 MiB and waits
// until the client has it before writing more, and the client does the same
// when uploading. A proxy that buffered whole bodies would deadlock; over
// HTTP/2 this also exercises flow control on both hops.
func TestLargeBodiesAreNotBufferedWhole(t *testing.T) {
	for name, client := range map[string]func() *http.Client{"HTTP/1": h1Client, "HTTP/2": h2cClient} {
		t.Run(name, func(t *testing.T) { testLargeBodies(t, client()) })
	}
}

func testLargeBodies(t *testing.T, client *http.Client) {
	const chunk = 1 << 20
	clientHasFirst := make(chan struct{})
	upstreamHasFirst := make(chan struct{})
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if _, err := io.ReadFull(r.Body, make([]byte, chunk)); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			close(upstreamHasFirst)
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", n+chunk)
			return
		}
		w.Write(bytes.Repeat([]byte("a"), chunk))
		w.(http.Flusher).Flush()
		select {
		case <-clientHasFirst:
		case <-time.After(10 * time.Second):
			return
		}
		w.Write(bytes.Repeat([]byte("b"), 16*chunk))
	}))
	p := outboundTo(t, up)

	resp, err := client.Get("http://" + p.outbound() + "/download")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, chunk)); err != nil {
		t.Fatalf("first MiB: %v", err)
	}
	close(clientHasFirst)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 16*chunk {
		t.Fatalf("rest of download: %d bytes, %v", n, err)
	}

	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("c"), chunk))
		select {
		case <-upstreamHasFirst:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(fmt.Errorf("upstream never got the first MiB"))
			return
		}
		pw.Write(bytes.Repeat([]byte("d"), 16*chunk))
		pw.Close()
	}()
	resp, err = client.Post("http://"+p.outbound()+"/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readAll(t, resp.Body); body != fmt.Sprint(17*chunk) {
		t.Errorf("upload: upstream counted %s bytes, want %d", body, 17*chunk)
	}
}

// TestUpstreamDownAnswers502 and a counted failure.
func TestUpstreamDownAnswers502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := outboundTo(t, addr)
	resp, err := h1Client().Get("http://" + p.outbound() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	fams := scrape(t, p)
	if v := metricValue(fams, "response_total", map[string]string{"status_code": "502", "classification": "failure"}); v != 1 {
		t.Errorf("response_total{502,failure} = %v, want 1", v)
	}
}
