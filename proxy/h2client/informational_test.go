package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// bothClients are net/http's h2c Transport (what upstreams met before
// stop 35) and h2client.
func bothClients(t *testing.T) map[string]http.RoundTripper {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return map[string]http.RoundTripper{"net/http": tr, "h2client": client(t, nil)}
}

// outcomeOf is a request's result (status, Content-Length, body size, whether the body failed), or "error".
func outcomeOf(rt http.RoundTripper, url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := rt.RoundTrip(req)
	if err != nil {
		return "error"
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return fmt.Sprintf("status %d cl %q body %d err %v", res.StatusCode, res.Header["Content-Length"], len(b), err != nil)
}

// TestResponsesAsNetHTTP: upstream answers through each client end the
// same. Many 1xx before the answer (102 Processing heartbeats on a long
// request, several 103 Early Hints) are bounded by their bytes, not their
// count, as net/http's Transport does (h2client once failed the sixth).
func TestResponsesAsNetHTTP(t *testing.T) {
	type script func(fr *http2.Framer, id uint32)
	infos := func(n int) script {
		return func(fr *http2.Framer, id uint32) {
			for range n {
				_ = writeHead(fr, id, false, ":status", "102")
			}
			_ = writeHead(fr, id, true, ":status", "200")
		}
	}
	cases := map[string]script{
		"five 1xx":                            infos(5),
		"six 1xx (102 Processing heartbeats)": infos(6),
		"twenty 1xx":                          infos(20),
		"content-length longer than the body": func(fr *http2.Framer, id uint32) {
			_ = writeHead(fr, id, false, ":status", "200", "content-length", "9")
			_ = fr.WriteData(id, true, []byte("hello"))
		},
		"1xx with END_STREAM": func(fr *http2.Framer, id uint32) {
			_ = writeHead(fr, id, true, ":status", "103")
		},
		"GOAWAY mid-stream (stream kept)": func(fr *http2.Framer, id uint32) {
			_ = writeHead(fr, id, false, ":status", "200")
			_ = fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			_ = fr.WriteData(id, true, []byte("hello"))
		},
		"RST_STREAM NO_ERROR after the whole answer": func(fr *http2.Framer, id uint32) {
			_ = writeHead(fr, id, false, ":status", "200")
			_ = fr.WriteData(id, true, []byte("hello"))
			_ = fr.WriteRSTStream(id, http2.ErrCodeNo)
		},
	}
	for name, sc := range cases {
		addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
			for {
				id, err := nextHeaders(fr)
				if err != nil {
					return
				}
				sc(fr, id)
			}
		})
		got := map[string]string{}
		for cn, rt := range bothClients(t) {
			got[cn] = outcomeOf(rt, "http://"+addr+"/")
		}
		if got["net/http"] != got["h2client"] {
			t.Errorf("%s: net/http %q, h2client %q", name, got["net/http"], got["h2client"])
		}
	}
}

// TestRequestsWithAContextAlreadyDone fail with the context's error, and
// (under -race) the cancellation that runs at once in a goroutine of its
// own does not race the request's bookkeeping; the connection serves on.
func TestRequestsWithAContextAlreadyDone(t *testing.T) {
	addr, _ := rawServer(t, func(t *testing.T, fr *http2.Framer, nc net.Conn) {
		for {
			id, err := nextHeaders(fr)
			if err != nil {
				return
			}
			_ = writeHead(fr, id, true, ":status", "200")
		}
	})
	c := client(t, nil)
	if res := outcomeOf(c, "http://"+addr+"/"); res != `status 200 cl [] body 0 err false` {
		t.Fatalf("first request: %s", res)
	}
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
		if res, err := c.RoundTrip(req); err == nil {
			res.Body.Close()
			t.Fatal("a request whose context was done succeeded")
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want the context's", err)
		}
	}
	if res := outcomeOf(c, "http://"+addr+"/"); res != `status 200 cl [] body 0 err false` {
		t.Errorf("after them: %s", res)
	}
}
