package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
)

// clock is a settable time for the collector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a dashboard over the shop fixture whose collector has
// scraped shop twice, 5s apart.
type fixture struct {
	src   *fixtureSource
	clock *clock
	c     *Collector
	s     *Server
	h     http.Handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{src: newFixtureSource(), clock: &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}}
	f.c = &Collector{Source: f.src, Now: f.clock.now}
	f.s = &Server{Collector: f.c, Source: f.src, Namespace: "shop", Version: "test"}
	f.s.SetHosts(LoopbackHosts("50750"))
	f.h = f.s.Handler()
	f.scrape(t)
	f.scrape(t)
	return f
}

// serve serves the dashboard on a loopback port, with that port's Host
// headers allowed, until the test's cleanups (registered before a
// browser's, it closes after it: an open tap stream would hold it).
func (f *fixture) serve(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	f.s.SetHosts(LoopbackHosts(port))
	return srv
}

// scrape advances the clock 5s and scrapes shop.
func (f *fixture) scrape(t *testing.T) {
	t.Helper()
	f.clock.advance(5 * time.Second)
	if err := f.c.refresh(context.Background(), f.c.watch("shop")); err != nil {
		t.Fatal(err)
	}
}

// get serves a GET with the dashboard's own Host.
func (f *fixture) get(t *testing.T, target string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = "127.0.0.1:50750"
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	return v
}

func edgeByID(g Graph, id string) *Edge {
	for i := range g.Edges {
		if g.Edges[i].ID == id {
			return &g.Edges[i]
		}
	}
	return nil
}

// TestGraphOfTheFixture: two scrapes 5s apart give every node and edge
// with its rate, success rate, p99 and padlock, the unmeshed caller, the
// destination outside the mesh and the split; as JSON and DOT (golden).
func TestGraphOfTheFixture(t *testing.T) {
	f := newFixture(t)
	g := decode[Graph](t, f.get(t, "/api/graph"))
	if g.Namespace != "shop" || g.Interval != 5 {
		t.Fatalf("namespace %q interval %v, want shop and 5s", g.Namespace, g.Interval)
	}
	load := edgeByID(g, "shop/load>shop/web")
	if load == nil || !load.Secured || load.RPS != 20 || load.SuccessRate == nil || *load.SuccessRate != 0.98 || *load.P99 != 50 || load.Requests != 200 {
		t.Errorf("load→web: %+v, want secured, 20 rps, 98%% success, p99 ≤50ms, 200 requests in total", load)
	}
	ext := edgeByID(g, "shop/web>external:example.com:443")
	if ext == nil || ext.Secured || ext.RPS != 2 {
		t.Errorf("web→example.com: %+v, want 2 rps, not secured", ext)
	}
	un := edgeByID(g, "unmeshed:shop>shop/web")
	if un == nil || un.Secured || un.RPS != 1 {
		t.Errorf("unmeshed→web: %+v, want 1 rps, not secured", un)
	}
	if len(g.Splits) != 2 || g.Splits[0].Percent != 90 || g.Splits[1].Percent != 10 || g.Splits[0].Targets[0] != "shop/api-v1" {
		t.Errorf("splits %+v, want api-v1 90%% and api-v2 10%%", g.Splits)
	}
	b, _ := json.MarshalIndent(g, "", "  ")
	golden(t, "graph.json", b)
	dot := f.get(t, "/api/graph?format=dot")
	if ct := dot.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/vnd.graphviz") {
		t.Errorf("DOT Content-Type %q", ct)
	}
	golden(t, "graph.dot", dot.Body.Bytes())
}

// TestFirstScrapeHasNoRates: before a second scrape there is no interval,
// so rates are unknown (null), not zero successes.
func TestFirstScrapeHasNoRates(t *testing.T) {
	src := newFixtureSource()
	c := &Collector{Source: src}
	g, err := c.Graph(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	e := edgeByID(g, "shop/load>shop/web")
	if g.Interval != 0 || e == nil || e.SuccessRate != nil || e.RPS != 0 || e.Requests != 100 {
		t.Errorf("first scrape: interval %v, edge %+v; want no rates and the total of 100", g.Interval, e)
	}
}

// TestFailingProxyIsReportedAndOthersShown: a pod whose proxy cannot be
// read is named with the cause, the rest of the graph is drawn.
func TestFailingProxyIsReportedAndOthersShown(t *testing.T) {
	f := newFixture(t)
	f.src.failing = "api-v2-77a-ccccc"
	f.scrape(t)
	g := decode[Graph](t, f.get(t, "/api/graph"))
	if len(g.Errors) != 1 || !strings.Contains(g.Errors[0], "api-v2-77a-ccccc") || !strings.Contains(g.Errors[0], "connection refused") {
		t.Errorf("errors %q, want the failing pod named with the cause", g.Errors)
	}
	if edgeByID(g, "shop/load>shop/web") == nil {
		t.Error("the other edges are gone")
	}
}

// TestRateAfterAFailedReadIsNotDoubled: a proxy unread for one scrape
// counted two intervals' requests by the next; its rate is still what it
// served per second (load sends web 100 requests every 5 s scrape: 20/s),
// and its success rate and totals are unchanged.
func TestRateAfterAFailedReadIsNotDoubled(t *testing.T) {
	f := newFixture(t)
	f.src.failing = "load-7d9f-abcde"
	f.scrape(t)
	f.src.failing = ""
	f.scrape(t)
	g := decode[Graph](t, f.get(t, "/api/graph"))
	e := edgeByID(g, "shop/load>shop/web")
	if e == nil || math.Abs(e.RPS-20) > 0.01 || e.SuccessRate == nil || math.Abs(*e.SuccessRate-0.98) > 1e-9 || e.Requests != 400 {
		t.Fatalf("load→web after a failed read: %+v, want 20 requests/s, 98%% success, 400 in all", e)
	}
	// And the scrape after that is an ordinary one.
	f.scrape(t)
	if e := edgeByID(decode[Graph](t, f.get(t, "/api/graph")), "shop/load>shop/web"); e == nil || math.Abs(e.RPS-20) > 0.01 {
		t.Fatalf("load→web on the next scrape: %+v, want 20 requests/s", e)
	}
}

// TestFilterKeepsMatchesAndNeighbours: the filter acts on the server,
// before the page lays anything out.
func TestFilterKeepsMatchesAndNeighbours(t *testing.T) {
	f := newFixture(t)
	g := decode[Graph](t, f.get(t, "/api/graph?filter=LOAD"))
	var ids []string
	for _, n := range g.Nodes {
		ids = append(ids, n.ID)
	}
	if strings.Join(ids, ",") != "shop/load,shop/web" || len(g.Edges) != 1 || len(g.Splits) != 0 {
		t.Errorf("filter load: nodes %v, %d edges, %d splits; want load and its neighbour web, one edge", ids, len(g.Edges), len(g.Splits))
	}
	g = decode[Graph](t, f.get(t, "/api/graph?filter=api-v2"))
	if len(g.Splits) != 2 {
		t.Errorf("filter api-v2: %d splits, want the route's two (its Service is kept)", len(g.Splits))
	}
}

// TestHostHeaderMustNameTheDashboard: a browser sent here under another
// name (DNS rebinding) is refused, as are methods other than GET.
func TestHostHeaderMustNameTheDashboard(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		host, method string
		want         int
	}{
		{"127.0.0.1:50750", http.MethodGet, http.StatusOK},
		{"localhost:50750", http.MethodGet, http.StatusOK},
		{"LOCALHOST:50750", http.MethodGet, http.StatusOK},
		{"[::1]:50750", http.MethodGet, http.StatusOK},
		{"evil.example:50750", http.MethodGet, http.StatusForbidden},
		{"localhost.evil.example:50750", http.MethodGet, http.StatusForbidden},
		{"127.0.0.1:80", http.MethodGet, http.StatusForbidden},
		{"127.0.0.1", http.MethodGet, http.StatusForbidden},
		{"", http.MethodGet, http.StatusForbidden},
		{"127.0.0.1:50750", http.MethodPost, http.StatusMethodNotAllowed},
		{"127.0.0.1:50750", http.MethodDelete, http.StatusMethodNotAllowed},
	} {
		for _, path := range []string{"/", "/api/graph", "/api/namespaces"} {
			req := httptest.NewRequest(c.method, path, nil)
			req.Host = c.host
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("%s %s Host %q: status %d, want %d", c.method, path, c.host, rec.Code, c.want)
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("%s %s: CSP %q", c.method, path, csp)
			}
		}
	}
}

// TestAllowedHosts: a loopback listener also answers to localhost; another
// address only to itself.
func TestAllowedHosts(t *testing.T) {
	got := AllowedHosts(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8084})
	if strings.Join(got, " ") != "127.0.0.1:8084 127.0.0.1:8084 [::1]:8084 localhost:8084" {
		t.Errorf("loopback: %v", got)
	}
	got = AllowedHosts(&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8084})
	if strings.Join(got, " ") != "10.1.2.3:8084" {
		t.Errorf("10.1.2.3: %v", got)
	}
}

// TestBadParametersAreRefused: names that are no Kubernetes names are a
// 400 with a JSON error, before anything is read.
func TestBadParametersAreRefused(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{"/api/graph?namespace=..%2Fx", "/api/graph?namespace=A", "/api/workload?namespace=shop",
		"/api/workload?namespace=shop&name=%3Cscript%3E", "/api/tap?namespace=shop&name=", "/api/graph?format=svg"} {
		rec := f.get(t, target)
		var e struct{ Error string }
		if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want 400 with a JSON error", target, rec.Code, rec.Body)
		}
	}
	if rec := f.get(t, "/api/workload?namespace=shop&name=nope"); rec.Code != http.StatusNotFound {
		t.Errorf("an unknown workload: %d, want 404", rec.Code)
	}
}

// TestViewsAndHistoryAreBounded: 100,000 namespaces asked for keep at most
// MaxViews views; a workload keeps at most HistoryLen points.
func TestViewsAndHistoryAreBounded(t *testing.T) {
	src := newFixtureSource()
	clk := &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	c := &Collector{Source: src, Now: clk.now, HistoryLen: 10, MaxViews: 8}
	for i := range 100_000 {
		clk.advance(time.Millisecond)
		c.watch(fmt.Sprintf("ns-%d", i))
	}
	if n := len(c.views); n != 8 {
		t.Errorf("%d views after 100,000 namespaces, want 8", n)
	}
	v := c.watch("shop")
	for range 25 {
		clk.advance(5 * time.Second)
		if err := c.refresh(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
	h := c.History("shop", "shop/web")
	if len(h) != 10 || !h[9].Time.Equal(clk.now()) {
		t.Errorf("%d points, the last at %v; want the 10 latest", len(h), h[len(h)-1].Time)
	}
	// Views not asked for within Idle are no longer scraped.
	clk.advance(time.Hour)
	if n := len(c.active()); n != 0 {
		t.Errorf("%d views active an hour after the last request, want 0", n)
	}
}

// TestWorkloadPage: the workload's node, history, pods with their proxies'
// certificates, edges, the policy and rate limit that apply, and routes.
func TestWorkloadPage(t *testing.T) {
	f := newFixture(t)
	f.scrape(t)
	w := decode[Workload](t, f.get(t, "/api/workload?namespace=shop&name=web"))
	if w.ID != "shop/web" || w.Kind != KindDeployment || len(w.History) != 2 || w.History[1].RPS != 21 {
		t.Errorf("node %s %s, history %+v; want two points of 21 rps", w.ID, w.Kind, w.History)
	}
	if len(w.Pods) != 1 || w.Pods[0].Identity == nil || w.Pods[0].ProxyVersion != "v0.9.0" || !w.Pods[0].Ready {
		t.Errorf("pods %+v", w.Pods)
	}
	if len(w.Inbound) != 2 || len(w.Outbound) != 3 {
		t.Errorf("%d inbound and %d outbound edges, want 2 and 3", len(w.Inbound), len(w.Outbound))
	}
	if len(w.Policies) != 1 || w.Policies[0].Port != 8080 || w.Policies[0].Clients[0] != loadID || w.RateLimit != 100 || w.DefaultPolicy != "all-unauthenticated" {
		t.Errorf("policies %+v, rate limit %v, default %q", w.Policies, w.RateLimit, w.DefaultPolicy)
	}
	api1 := decode[Workload](t, f.get(t, "/api/workload?namespace=shop&name=api-v1"))
	if len(api1.Routes) != 1 || api1.Routes[0].Name != "shop/api-split" || len(api1.Routes[0].Backends) != 2 || len(api1.Policies) != 0 {
		t.Errorf("api-v1 routes %+v policies %+v; want the split with both backends, no policy", api1.Routes, api1.Policies)
	}
}

// TestIdentityPageNamesProxiesOnAnOldIssuer.
func TestIdentityPageNamesProxiesOnAnOldIssuer(t *testing.T) {
	f := newFixture(t)
	f.src.issuer = f.src.identityIssuer()
	f.src.issuers["api-v2-77a-ccccc"] = "0ld"
	f.src.failing = "load-7d9f-abcde"
	id := decode[Identity](t, f.get(t, "/api/identity"))
	if id.Proxies != 4 || len(id.OnOldIssuer) != 1 || id.OnOldIssuer[0].Pod != "api-v2-77a-ccccc" || len(id.Unread) != 1 || id.Issuer == nil || len(id.TrustAnchors) != 1 {
		t.Errorf("identity page %+v; want 4 proxies, api-v2 on the old issuer, load unread", id)
	}
}

// TestHealthPage: the check results, failed when one is an error.
func TestHealthPage(t *testing.T) {
	f := newFixture(t)
	h := decode[Health](t, f.get(t, "/api/health"))
	if h.Passed || len(h.Results) != 2 {
		t.Errorf("%+v, want not passed with two results", h)
	}
}

// TestTapStreamsEventsAndFailures: the tap is server-sent events of the
// workload's pods, a failing pod reported, and ends with the page.
func TestTapStreamsEventsAndFailures(t *testing.T) {
	f := newFixture(t)
	f.src.tap = []api.TapEvent{{Type: "start", ID: 1, Method: "GET", Path: "/x"}, {Type: "end", ID: 1, Status: 200, LatencyMs: 1.5}}
	srv := f.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/tap?namespace=shop&name=web", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got []TapEvent
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() && len(got) < 2 {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			if event == "" {
				var e TapEvent
				if err := json.Unmarshal([]byte(d), &e); err != nil {
					t.Fatal(err)
				}
				got = append(got, e)
			}
			event = ""
		}
	}
	if len(got) != 2 || got[0].Pod != "web-5c6b-aaaaa" || got[0].Path != "/x" || got[1].Status != 200 {
		t.Errorf("events %+v", got)
	}
	// The page's limit on open taps.
	f.s.taps <- struct{}{}
	f.s.taps <- struct{}{}
	f.s.taps <- struct{}{}
	r2, err := (&http.Client{Timeout: 5 * time.Second}).Get(srv.URL + "/api/tap?namespace=shop&name=web")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != http.StatusTooManyRequests || !bytes.Contains(body, []byte("live taps")) {
		t.Errorf("a fifth tap: %d %s, want 429", r2.StatusCode, body)
	}
}
