package httpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

// echoed is what an echo backend saw of a request.
type echoed struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Header  http.Header `json:"header"`
}

// echoBackend starts a backend that answers each request with what it saw
// of it, as JSON, naming itself; it counts its requests.
type echoBackend struct {
	addr  string
	count atomic.Int64
	seen  chan echoed // every request, if someone listens (buffered)
}

func newEcho(t *testing.T, name string, h http.HandlerFunc) *echoBackend {
	t.Helper()
	e := &echoBackend{seen: make(chan echoed, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.count.Add(1)
		seen := echoed{Backend: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header}
		select {
		case e.seen <- seen:
		default:
		}
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(srv.Close)
	e.addr = srv.Listener.Addr().String()
	return e
}

// testProxy is a Proxy serving one destination (set) on a real listener,
// as the outbound side would (HTTP/1 and h2c).
type testProxy struct {
	*Proxy
	url     string
	metrics *metrics.Metrics
}

func serve(t *testing.T, set *endpoints.Set, cfg Config) *testProxy {
	t.Helper()
	p := New(cfg)
	m := metrics.New(metrics.Config{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &ConnInfo{Direction: metrics.Outbound, Upstream: set, Metrics: m.Open(metrics.ConnLabels{Direction: metrics.Outbound})}
		p.ServeHTTP(w, r.WithContext(WithConnInfo(r.Context(), info)))
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(func() { srv.Close(); p.WaitMirrors(); p.Close() })
	return &testProxy{Proxy: p, url: "http://" + srv.Listener.Addr().String(), metrics: m}
}

// counter reads a counter of the proxy's metrics with these labels (0 when absent).
func (tp *testProxy) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var buf bytes.Buffer
	tp.metrics.WritePrometheus(&buf)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k {
			return l.GetValue() == v
		}
	}
	return false
}

// destination is a balanced set of the given endpoints, named name, with
// the policy of these Service annotations and these routes.
func destination(t *testing.T, name string, annotations map[string]string, routes []endpoints.RouteSpec, addrs ...string) *endpoints.Set {
	t.Helper()
	eps := make([]endpoints.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = endpoints.Endpoint{Addr: a}
	}
	s := endpoints.NewSet(eps...)
	pol, errs := servicepolicy.Parse(annotations)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s.SetPolicy(name, pol)
	s.SetRoutes(routes)
	return s
}

// to is a backend spec of one Service at addr.
func to(name, addr string, weight int) endpoints.BackendSpec {
	return endpoints.BackendSpec{Name: name, Weight: weight, Endpoints: []endpoints.Endpoint{{Addr: addr}}}
}

func h1() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func h2c() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 10 * time.Second}
}

// do sends a request and returns the answer with its body read.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
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

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	return do(t, h1(), req)
}

// decode reads an echo backend's answer.
func decode(t *testing.T, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo answer: %q: %v", body, err)
	}
	return e
}

// unreachable is an address where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
