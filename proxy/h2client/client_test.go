package h2client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func get(t *testing.T, c *Client, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	_ = res.Body.Close()
	return res, b
}

// TestAgainstNetHTTPServer sends the requests the mesh carries to
// net/http's HTTP/2 server and checks what each side saw.
func TestAgainstNetHTTPServer(t *testing.T) {
	big := make([]byte, 10<<20)
	_, _ = rand.Read(big)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Cookies", strings.Join(r.Header.Values("Cookie"), "|"))
		w.Header().Set("X-Te", r.Header.Get("Te"))
		w.Header().Set("X-Ua", fmt.Sprint(r.Header["User-Agent"]))
		_, _ = io.Copy(w, r.Body)
		if v := r.Trailer.Get("X-Sum"); v != "" {
			w.Header().Set(http.TrailerPrefix+"X-Got-Sum", v)
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) })
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		_, _ = fmt.Sscan(r.PathValue("code"), &code)
		if code == 103 {
			w.Header().Set("Link", "</a.css>")
			w.WriteHeader(103)
			code = 200
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "x")
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		_, _ = io.WriteString(w, "data")
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Undeclared", "yes")
	})
	addr, _ := serve(t, mux)
	c := client(t, nil)
	base := "http://" + addr

	t.Run("GET", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/echo", nil)
		req.Header.Set("Cookie", "a=1; b=2")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Connection", "keep-alive")
		res, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != 200 || res.Proto != "HTTP/2.0" || res.Header.Get("X-Method") != "GET" || res.Header.Get("X-Length") != "0" {
			t.Fatalf("got %d %s %v", res.StatusCode, res.Proto, res.Header)
		}
		if got := res.Header.Get("X-Cookies"); got != "a=1; b=2" {
			t.Errorf("cookies arrived as %q", got)
		}
		if res.Header.Get("X-Te") != "trailers" || res.Header.Get("X-Ua") != "[]" {
			t.Errorf("te %q, user-agent %q: want trailers and none added", res.Header.Get("X-Te"), res.Header.Get("X-Ua"))
		}
	})
	t.Run("POST 10 MiB each way", func(t *testing.T) {
		res, body := get(t, c, "POST", base+"/echo", bytes.NewReader(big))
		if res.Header.Get("X-Length") != fmt.Sprint(len(big)) || !bytes.Equal(body, big) {
			t.Fatalf("length %s, echoed %d bytes equal=%v", res.Header.Get("X-Length"), len(body), bytes.Equal(body, big))
		}
		_, body = get(t, c, "GET", base+"/big", nil)
		if !bytes.Equal(body, big) {
			t.Fatalf("got %d bytes, not the 10 MiB sent", len(body))
		}
	})
	t.Run("POST of unknown length, with trailers", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/echo", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")))
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sum": nil}
		res, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		req.Trailer.Set("X-Sum", "42") // too late: the trailers went when the body ended
		b, _ := io.ReadAll(res.Body)
		if string(b) != "abcdef" || res.Header.Get("X-Length") != "-1" {
			t.Fatalf("echoed %q, length %s", b, res.Header.Get("X-Length"))
		}
	})
	t.Run("request trailers", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", base+"/echo", pr)
		req.Trailer = http.Header{"X-Sum": nil}
		go func() {
			_, _ = io.WriteString(pw, "payload")
			req.Trailer.Set("X-Sum", "42")
			_ = pw.Close()
		}()
		res, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != "payload" || res.Trailer.Get("X-Got-Sum") != "42" {
			t.Fatalf("echoed %q, trailers %v", b, res.Trailer)
		}
	})
	t.Run("response trailers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/trailers", nil)
		res, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Trailer["Grpc-Status"]; !ok {
			t.Fatalf("declared trailers %v, want Grpc-Status", res.Trailer)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != "data" || res.Trailer.Get("Grpc-Status") != "0" || res.Trailer.Get("Undeclared") != "yes" {
			t.Fatalf("body %q, trailers %v", b, res.Trailer)
		}
	})
	for _, tc := range []struct {
		method string
		code   int
		body   string
	}{{"GET", 204, ""}, {"GET", 304, ""}, {"HEAD", 200, ""}, {"GET", 103, "x"}, {"GET", 404, "x"}, {"GET", 500, "x"}} {
		t.Run(fmt.Sprint(tc.method, " ", tc.code), func(t *testing.T) {
			res, body := get(t, c, tc.method, fmt.Sprint(base, "/status/", tc.code), nil)
			want := tc.code
			if want == 103 {
				want = 200
			}
			if res.StatusCode != want || string(body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, body, want, tc.body)
			}
		})
	}
	t.Run("invalid fields fail before sending", func(t *testing.T) {
		for _, h := range []http.Header{{"X-Bad": {"a\nb"}}, {"Bad Name": {"v"}}} {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			req.Header = h
			if _, err := c.RoundTrip(req); err == nil {
				t.Errorf("%v: sent", h)
			}
		}
	})
}

// TestBidirectionalStreaming exchanges lines one at a time: the request's
// body must go out as it is written, and the response's come in as it is
// flushed (gRPC's bidirectional calls).
func TestBidirectionalStreaming(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			_, _ = fmt.Fprintf(w, "echo %s\n", sc.Text())
			w.(http.Flusher).Flush()
		}
	}))
	c := client(t, nil)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", pr)
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(res.Body)
	for i := range 20 {
		_, _ = fmt.Fprintf(pw, "line %d\n", i)
		line, err := rd.ReadString('\n')
		if err != nil || line != fmt.Sprintf("echo line %d\n", i) {
			t.Fatalf("round %d: %q, %v", i, line, err)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
		t.Fatalf("after the request's end: %q, %v", rest, err)
	}
}

// TestCancellationResetsTheStream cancels a request whose response is
// streaming: the reader gets the context's error, the server's handler
// sees its request cancelled, and the connection serves the next request.
func TestCancellationResetsTheStream(t *testing.T) {
	cancelled := make(chan struct{})
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(cancelled)
	}))
	var n counter
	c := client(t, &n)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/stream", nil)
	res, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := res.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handler was not cancelled")
	}
	if res, _ := get(t, c, "GET", "http://"+addr+"/ok", nil); res.StatusCode != 200 || n.dials.Load() != 1 {
		t.Fatalf("next request: %d on %d connections", res.StatusCode, n.dials.Load())
	}
}

// TestManyConcurrentRequestsOverFewStreams sends 1000 requests from 100
// goroutines to a server that allows 10 streams per connection.
func TestManyConcurrentRequestsOverFewStreams(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}), func(s *http.Server) { s.HTTP2.MaxConcurrentStreams = 10 })
	var n counter
	c := client(t, &n)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				want := fmt.Sprint(g, "-", i)
				var body io.Reader
				if i%2 == 0 {
					body = strings.NewReader(want)
				}
				req, _ := http.NewRequest("POST", "http://"+addr+"/", body)
				res, err := c.RoundTrip(req)
				if err != nil {
					errs <- err
					continue
				}
				b, err := io.ReadAll(res.Body)
				if err != nil || (body != nil && string(b) != want) {
					errs <- fmt.Errorf("got %q, %v, want %q", b, err, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := n.dials.Load(); d < 2 || d > 20 {
		t.Errorf("%d connections for 100 concurrent requests at 10 streams each", d)
	}
}
