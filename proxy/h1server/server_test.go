package h1server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/h1"
)

// serve runs s on a loopback listener until the test ends and returns its
// address and a count of the connections it accepted.
func serve(t *testing.T, s *Server) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() { defer wg.Done(); s.ServeConn(c, nil) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.Close()
		wg.Wait()
	})
	return ln.Addr().String(), &accepted
}

// echo answers with the request's method, target, Host, one header and body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s %s host=%s x=%s te=%v len=%d body=%s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Test"), r.TransferEncoding, r.ContentLength, body)
})

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestKeepAliveRequestsShareOneConnection(t *testing.T) {
	addr, accepted := serve(t, &Server{Handler: echo})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	for i := range 50 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/p/%d?q=1", addr, i), nil)
		req.Header.Set("X-Test", "v")
		res, body := get(t, c, req)
		want := fmt.Sprintf("GET /p/%d?q=1 host=%s x=v te=[] len=0 body=", i, addr)
		if res.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, res.StatusCode, body, want)
		}
		if res.Header.Get("Date") == "" || res.ContentLength != int64(len(want)) && res.ContentLength != -1 {
			t.Fatalf("response head: %v (length %d)", res.Header, res.ContentLength)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("50 keep-alive requests took %d connections, want 1", n)
	}
}

func TestRequestBodies(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: echo})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	req, _ := http.NewRequest("POST", "http://"+addr+"/len", strings.NewReader("hello"))
	if _, body := get(t, c, req); !strings.HasSuffix(body, "te=[] len=5 body=hello") {
		t.Errorf("Content-Length body: %q", body)
	}
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("chunk one, ")); pw.Write([]byte("chunk two")); pw.Close() }()
	req, _ = http.NewRequest("POST", "http://"+addr+"/chunked", pr)
	if _, body := get(t, c, req); !strings.HasSuffix(body, "te=[chunked] len=-1 body=chunk one, chunk two") {
		t.Errorf("chunked body: %q", body)
	}
	// A body the handler does not read is drained to keep the connection.
	ignore := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	addr2, accepted := serve(t, ignore)
	for range 3 {
		req, _ = http.NewRequest("POST", "http://"+addr2+"/", strings.NewReader(strings.Repeat("x", 10000)))
		if res, _ := get(t, c, req); res.StatusCode != 200 || res.ContentLength != 0 {
			t.Fatalf("unread body: %d, length %d", res.StatusCode, res.ContentLength)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("requests whose bodies went unread took %d connections, want 1", n)
	}
}

func TestStreamedResponseWithTrailers(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(201)
		io.WriteString(w, "part 1;")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part 2")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})})
	res, body := get(t, &http.Client{Timeout: 10 * time.Second}, mustRequest(t, "GET", "http://"+addr+"/"))
	if res.StatusCode != 201 || body != "part 1;part 2" || len(res.TransferEncoding) != 1 || res.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("got %d %q, transfer encoding %v, trailers %v", res.StatusCode, body, res.TransferEncoding, res.Trailer)
	}
}

func TestResponsesWithoutBodies(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	})})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	for _, tc := range []struct {
		method, path string
		status       int
		length       int64
	}{{"HEAD", "/", 200, 5}, {"GET", "/204", 204, 0}, {"GET", "/304", 304, 0}, {"GET", "/", 200, 5}} {
		res, body := get(t, c, mustRequest(t, tc.method, "http://"+addr+tc.path))
		wantBody := ""
		if tc.method == "GET" && tc.status == 200 {
			wantBody = "hello"
		}
		if res.StatusCode != tc.status || res.ContentLength != tc.length && tc.status == 200 || body != wantBody {
			t.Errorf("%s %s: %d length %d body %q", tc.method, tc.path, res.StatusCode, res.ContentLength, body)
		}
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: echo})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for i, want := range []string{"GET /1 ", "POST /2 host=a x= te=[] len=3 body=abc", "GET /3 "} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(res.Body)
		if !strings.HasPrefix(string(b), want) {
			t.Errorf("response %d: %q, want it to start %q", i+1, b, want)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the connection stayed open (%v)", err)
	}
}

func TestSmugglingFormsAreRefusedAndClosed(t *testing.T) {
	var handled atomic.Int64
	var refused sync.Map
	addr, _ := serve(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }),
		Refused: func(c net.Conn, status int, reason h1.Reason) { refused.Store(reason, status) },
	})
	for name, head := range map[string]string{
		"length and chunked": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"two lengths":        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"obs-fold":           "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"bare LF":            "GET / HTTP/1.1\nHost: a\n\n",
		"chunked, identity":  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"no Host":            "GET / HTTP/1.1\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, head)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("the connection was not closed: %v", err)
			}
			if !strings.HasPrefix(string(all), "HTTP/1.1 4") && !strings.HasPrefix(string(all), "HTTP/1.1 5") {
				t.Errorf("answer %q, want a 4xx or 5xx", all)
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the handler saw %d refused requests", n)
	}
	n := 0
	refused.Range(func(k, v any) bool { n++; return true })
	if n < 5 {
		t.Errorf("Refused heard %d distinct reasons, want at least 5", n)
	}
}
