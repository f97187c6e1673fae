package proxy

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// benchBackend answers every request with 1 KiB.
func benchBackend(b *testing.B) string {
	body := bytes.Repeat([]byte("x"), 1024)
	return backend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
}

func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkDirectHTTP1 is the baseline: client → backend, no proxy.
func BenchmarkDirectHTTP1(b *testing.B) {
	benchGet(b, h1Client(), "http://"+benchBackend(b)+"/")
}

// BenchmarkProxiedHTTP1 is one HTTP/1 request through the outbound proxy,
// over keep-alive connections on both sides.
func BenchmarkProxiedHTTP1(b *testing.B) {
	p := outboundTo(b, benchBackend(b))
	benchGet(b, h1Client(), "http://"+p.outbound()+"/")
}

// BenchmarkDirectHTTP2 is the h2c baseline.
func BenchmarkDirectHTTP2(b *testing.B) {
	benchGet(b, h2cClient(), "http://"+benchBackend(b)+"/")
}

// BenchmarkProxiedHTTP2 is one h2c request through the outbound proxy.
func BenchmarkProxiedHTTP2(b *testing.B) {
	p := outboundTo(b, benchBackend(b))
	benchGet(b, h2cClient(), "http://"+p.outbound()+"/")
}
