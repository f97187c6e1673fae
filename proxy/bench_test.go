package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/endpoints"
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

// BenchmarkBalancedHTTP1 is ProxiedHTTP1 to a Service of three endpoints,
// balanced per request (P2C over peak EWMA): its cost over ProxiedHTTP1 is
// the balancer's.
func BenchmarkBalancedHTTP1(b *testing.B) {
	p := balancedBench(b, nil)
	benchGet(b, h1Client(), "http://"+p.outbound()+"/")
}

// BenchmarkBalancedRetryableHTTP1 adds a retry policy (never used: nothing
// fails) and a request timeout: the cost of the budget and the timers.
func BenchmarkBalancedRetryableHTTP1(b *testing.B) {
	p := balancedBench(b, map[string]string{"retry.meshctl.io/http": "5xx", "timeout.meshctl.io/request": "10s", "retry.meshctl.io/timeout": "5s"})
	benchGet(b, h1Client(), "http://"+p.outbound()+"/")
}

func balancedBench(b *testing.B, annotations map[string]string) *running {
	table, err := json.Marshal(map[string]any{serviceAddr: map[string]any{
		"endpoints": []string{benchBackend(b), benchBackend(b), benchBackend(b)}, "annotations": annotations}})
	if err != nil {
		b.Fatal(err)
	}
	tab, err := endpoints.Parse(table)
	if err != nil {
		b.Fatal(err)
	}
	return startProxy(b, Config{Endpoints: tab, Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: serviceAddr}})
}

// BenchmarkMeshedHTTP1 is one HTTP/1 request through two proxies and the
// meshed hop between them (HTTP/2 over mutual TLS): the sidecar-to-sidecar
// path every meshed request takes.
func BenchmarkMeshedHTTP1(b *testing.B) {
	ca := testpki.NewRoot(b, "root")
	m := newMeshPair(b, benchBackend(b), serverSPIFFE, ca.Issue(b, serverSPIFFE, -time.Minute, time.Hour), ca)
	benchGet(b, h1Client(), "http://"+m.client.outbound()+"/")
}
