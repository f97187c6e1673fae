package h1server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// dial connects to addr with a deadline on everything that follows.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestAPanickingHandlerEndsOnlyItsConnection(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "fine")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "GET /abort HTTP/1.1\r\nHost: a\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(res.Body); err == nil {
		t.Errorf("an aborted response read whole: %q", b)
	}
	c2, br2 := dial(t, addr)
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := readResponse(t, br2, "GET"); body != "fine" {
		t.Errorf("after a handler's panic the server answered %q", body)
	}
}

func TestPipelinedRequestsAfterAnUnreadBodyAndASlowHandler(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	slow := make(chan struct{})
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/slow" {
			<-slow
		}
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, br, "POST")
	// The next request arrives while /slow's handler runs: the background
	// read takes its first byte, which must not be lost.
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	close(slow)
	readResponse(t, br, "GET")
	readResponse(t, br, "GET")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "POST /1,GET /slow,GET /3" {
		t.Errorf("the handler saw %q", seen)
	}
}

func TestABodyStillBeingReadWhenTheHandlerReturns(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			go io.Copy(io.Discard, r.Body) // as a transport streaming it upstream
			time.Sleep(20 * time.Millisecond)
		}
		io.WriteString(w, "answer")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
	if _, body := readResponse(t, br, "POST"); body != "answer" {
		t.Fatalf("early answer %q", body)
	}
	io.WriteString(c, "56789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	// Either the body's rest is read and the next request answered, or
	// the connection is closed: never a hang, never a misread request.
	res, err := http.ReadResponse(br, nil)
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		if string(b) != "answer" {
			t.Errorf("the next request got %q", b)
		}
	} else if err != io.EOF && err != io.ErrUnexpectedEOF {
		t.Errorf("after an early answer: %v", err)
	}
}

func TestConnectDoesNotBypassTheStrictParser(t *testing.T) {
	h := &handOffs{got: make(chan string, 1)}
	addr, _ := serve(t, &Server{Handler: echo, HandOff: h.take})
	c, _ := dial(t, addr)
	io.WriteString(c, "CONNECT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
	all, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(all), "HTTP/1.1 400 ") {
		t.Errorf("CONNECT with Content-Length and Transfer-Encoding answered %q, want 400", all)
	}
	select {
	case got := <-h.got:
		t.Errorf("handed off: %q", got)
	default:
	}
}

func TestHandOffCarriesEveryByteRead(t *testing.T) {
	h := &handOffs{got: make(chan string, 1)}
	s := &Server{Handler: echo, HandOff: h.take}
	client, server := net.Pipe()
	defer client.Close()
	head := "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", BufferSize+1000) + "\r\n\r\n"
	go s.ServeConn(server, []byte(head))
	select {
	case got := <-h.got:
		if got != head {
			t.Errorf("handed off %d bytes of a %d-byte head", len(got), len(head))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not handed off")
	}
}

func TestALargeUnreadBodyClosesTheConnectionCleanly(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not reading that")
	})})
	c, br := dial(t, addr)
	go func() {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
		c.Write(make([]byte, 1<<20))
	}()
	res, body := readResponse(t, br, "POST")
	if !res.Close || body != "not reading that" {
		t.Errorf("got %q, close %v: want the answer and Connection: close", body, res.Close)
	}
}

func TestHTTP10KeepAlive(t *testing.T) {
	addr, accepted := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})})
	c, br := dial(t, addr)
	for range 2 {
		io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		if res, body := readResponse(t, br, "GET"); body != "ok" || res.Close {
			t.Fatalf("HTTP/1.0 keep-alive: %q, close %v, header %v", body, res.Close, res.Header)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections", n)
	}
}

func TestWhatTheHandlerSeesAndWrites(t *testing.T) {
	addr, _ := serve(t, &Server{ReadHeaderTimeout: 300 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Host"]; ok {
			t.Error("Host left in the header map")
		}
		if _, ok := r.Header["Transfer-Encoding"]; ok {
			t.Error("Transfer-Encoding left in the header map")
		}
		io.ReadAll(r.Body)
		w.Header().Set("X-Injected", "a\r\nSet-Cookie: evil=1")
		w.Header().Set("Content-Length", "2")
		if _, err := io.WriteString(w, "too long"); err != http.ErrContentLength && r.Method != "HEAD" {
			t.Errorf("writing past Content-Length: %v", err)
		}
		io.WriteString(w, "ok")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	res, body := readResponse(t, br, "POST")
	if body != "ok" || res.Header.Get("Set-Cookie") != "" || !strings.Contains(res.Header.Get("X-Injected"), "Set-Cookie") {
		t.Errorf("got %q, header %v", body, res.Header)
	}
	// HEAD: the head only, then the next response follows at once.
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if res, body := readResponse(t, br, "HEAD"); body != "" || res.ContentLength != 2 {
		t.Errorf("HEAD: %q, length %d", body, res.ContentLength)
	}
	if _, body := readResponse(t, br, "GET"); body != "ok" {
		t.Errorf("after HEAD: %q", body)
	}
	// A refused head is answered with Connection: close.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	if res, _ := readResponse(t, br, "GET"); res.StatusCode != 400 || !res.Close {
		t.Errorf("a refused head: %d, close %v", res.StatusCode, res.Close)
	}
	// A head that never ends is cut off after ReadHeaderTimeout.
	slow, slowR := dial(t, addr)
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: a\r\n")
	start := time.Now()
	if _, err := slowR.ReadByte(); err != io.EOF || time.Since(start) > 5*time.Second {
		t.Errorf("a slow head: %v after %s", err, time.Since(start))
	}
}
