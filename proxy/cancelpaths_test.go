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

// readFinal reads responses until a final (non-1xx) one.
func readFinal(br *bufio.Reader) (*http.Response, error) {
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode >= 200 {
			return res, err
		}
	}
}

// cancelled sends pre (answered fully first, if any) then req on one
// connection, waits for req to reach the application, and ends the
// connection by how (fin, rst, halfclose); it reports whether the
// application's request was cancelled (within 5 s, when it answers), and
// for a half-close whether the answer still came.
func cancelled(t *testing.T, halfClose bool, pre, req, how string) (cancelled bool, answered bool) {
	started := make(chan struct{}, 4)
	result := make(chan bool, 4)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/slow" {
			io.WriteString(w, "fast")
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			result <- true
		case <-time.After(5 * time.Second):
			io.WriteString(w, "answer")
			result <- false
		}
	}))
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, AllowHalfClose: halfClose})
	c, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if pre != "" {
		io.WriteString(c, pre)
		res, err := readFinal(br)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
	}
	io.WriteString(c, req)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the app")
	}
	switch how {
	case "fin":
		c.Close()
	case "rst":
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	case "halfclose":
		c.(*net.TCPConn).CloseWrite()
	}
	cancelled = <-result
	if how == "halfclose" {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if res, err := readFinal(br); err == nil {
			b, _ := io.ReadAll(res.Body)
			answered = string(b) == "answer"
		}
	}
	return
}

// TestGoneClientsCancelOnEveryPath: a client that closes or resets its
// connection cancels its request upstream, and one that half-closes with
// AllowHalfClose gets its answer, whatever served the request: the proxy's
// HTTP/1 server (a plain request, a body, a chunked body, a pipelined
// request behind it) or net/http's after a hand-off (100-continue, a large
// head, a connection handed off before).
func TestGoneClientsCancelOnEveryPath(t *testing.T) {
	big := "GET /slow HTTP/1.1\r\nHost: app\r\nX-Big: " + strings.Repeat("b", 9000) + "\r\n\r\n"
	reqs := map[string]string{
		"plain":        "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n",
		"body":         "POST /slow HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello",
		"chunked":      "POST /slow HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"100-continue": "POST /slow HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
		"large head":   big,
		"pipelined":    "GET /slow HTTP/1.1\r\nHost: app\r\n\r\nGET /fast HTTP/1.1\r\nHost: app\r\n\r\n",
	}
	pres := map[string]string{
		"":               "",
		"after-handoff/": "POST /fast HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	}
	for pn, pre := range pres {
		for rn, req := range reqs {
			for _, how := range []string{"fin", "rst"} {
				t.Run(pn+rn+"/"+how, func(t *testing.T) {
					t.Parallel()
					if c, _ := cancelled(t, false, pre, req, how); !c {
						t.Errorf("gone client's request not cancelled upstream")
					}
				})
			}
			t.Run(pn+rn+"/halfclose-allowed", func(t *testing.T) {
				t.Parallel()
				if c, a := cancelled(t, true, pre, req, "halfclose"); c || !a {
					t.Errorf("half-closed client: cancelled=%v answered=%v", c, a)
				}
			})
			t.Run(pn+rn+"/rst-halfclose-allowed", func(t *testing.T) {
				t.Parallel()
				if c, _ := cancelled(t, true, pre, req, "rst"); !c {
					t.Errorf("reset client's request not cancelled upstream (AllowHalfClose)")
				}
			})
		}
	}
}
