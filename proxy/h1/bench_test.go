package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// benchHead is a typical request head from an application to its proxy.
var benchHead = []byte("POST /api/v1/orders?id=7 HTTP/1.1\r\nHost: api.shop.svc.cluster.local:8080\r\nUser-Agent: load/1.0\r\n" +
	"Accept: */*\r\nAccept-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: 128\r\n" +
	"X-Request-Id: 5f0c2a1e-8d7b-4c39-9d5e-0b1f2a3c4d5e\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")

// BenchmarkParseRequestHead is this codec's cost per request head; compare
// with BenchmarkNetHTTPReadRequest (the same head) in the same run.
func BenchmarkParseRequestHead(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHead)))
	var r Request
	for b.Loop() {
		if _, err := r.Parse(benchHead); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetHTTPReadRequest is net/http's reading of the same head, the
// baseline.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHead)))
	src := bytes.NewReader(benchHead)
	br := bufio.NewReader(src)
	for b.Loop() {
		src.Reset(benchHead)
		br.Reset(src)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFasthttpRequestHeader is fasthttp's request-head parser on the
// same head: the well-kept alternative to this codec, measured, not
// linked into mesh-proxy.
func BenchmarkFasthttpRequestHeader(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHead)))
	src := bytes.NewReader(benchHead)
	br := bufio.NewReader(src)
	var h fasthttp.RequestHeader
	for b.Loop() {
		src.Reset(benchHead)
		br.Reset(src)
		h.Reset()
		if err := h.Read(br); err != nil {
			b.Fatal(err)
		}
	}
}
