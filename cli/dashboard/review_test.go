package dashboard

// Regression tests from a security and mutation review of the dashboard.

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHostHeaderNearMissesAreRefused: every near-miss (DNS rebinding with a
// suffix, other spellings of loopback, trailing dots) of the dashboard's Host is refused.
func TestHostHeaderNearMissesAreRefused(t *testing.T) {
	f := newFixture(t)
	for _, host := range []string{
		"127.0.0.1:50750.evil.com", "127.0.0.1.evil.com:50750", "localhost.:50750", "127.0.0.1.:50750",
		"[0:0:0:0:0:0:0:1]:50750", "[::ffff:127.0.0.1]:50750", "[::1%25lo]:50750", "::1:50750",
		"127.1:50750", "2130706433:50750", "0x7f000001:50750", "127.0.0.1:050750", "127.0.0.1:50750 ",
		" 127.0.0.1:50750", "127.0.0.1:50750\t", "0.0.0.0:50750", "127.0.0.2:50750", "LOCALHOST.:50750",
		"evil.com", "127.0.0.1:50750,evil.com", "user@127.0.0.1:50750",
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/config", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("Host %q: %d, want 403", host, rec.Code)
		}
	}
}

// TestDOTKeepsHostileNamesQuoted: authorities and dst_workload labels are
// whatever clients send; the DOT export must keep them inside quotes.
func TestDOTKeepsHostileNamesQuoted(t *testing.T) {
	f := newFixture(t)
	hostile := []string{`a"];evil->x[label="pwn`, `back\`, "nl\nx [label=pwn];", `<b>html</b>`, `x\"];y`}
	var series []traffic
	for _, h := range hostile {
		series = append(series, traffic{dir: "outbound", authority: h, status: 200, count: 1, le: 10},
			traffic{dir: "outbound", tls: true, serverID: webID, dstWorkload: h, status: 200, count: 1, le: 10})
	}
	f.src.pods[0].series = func(int) []traffic { return series }
	f.scrape(t)
	rec := f.get(t, "/api/graph?format=dot")
	// A line is: statement of quoted strings, identifiers and punctuation.
	quoted := `"(?:[^"\\]|\\.)*"`
	stmt := regexp.MustCompile(`^(?:  (?:` + quoted + `(?: -> ` + quoted + `)? \[[a-z]+=(?:` + quoted + `|[a-z]+)(?:, [a-z]+=(?:` + quoted + `|[a-z]+))*\];|rankdir=LR;|node \[.*\];)|digraph mesh \{|\})$`)
	for _, l := range strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n") {
		if !stmt.MatchString(l) {
			t.Errorf("DOT line out of shape: %q", l)
		}
	}
}

// TestEdgeSuccessRateIsOverTheWindow: an edge whose requests all fail in
// the last interval has a success rate of 0, whatever came before.
func TestEdgeSuccessRateIsOverTheWindow(t *testing.T) {
	f := newFixture(t)
	f.src.pods[0].series = func(n int) []traffic {
		return []traffic{
			{dir: "outbound", tls: true, serverID: webID, dstWorkload: "web", authority: "web.shop.svc.cluster.local:80", status: 200, count: 196, le: 10},
			{dir: "outbound", tls: true, serverID: webID, dstWorkload: "web", authority: "web.shop.svc.cluster.local:80", status: 500, count: float64(4 + 100*(n-2)), le: 50},
		}
	}
	f.scrape(t)
	e := edgeByID(decode[Graph](t, f.get(t, "/api/graph")), "shop/load>shop/web")
	if e == nil || e.SuccessRate == nil || *e.SuccessRate != 0 || e.RPS != 20 {
		t.Errorf("load→web with every request of the interval failed: %+v, want 20 rps at 0%% success", e)
	}
}

// TestEdgeWithoutTheServersIdentityIsNotSecured: TLS without a server
// identity is no padlock.
func TestEdgeWithoutTheServersIdentityIsNotSecured(t *testing.T) {
	f := newFixture(t)
	f.src.pods[0].series = func(n int) []traffic {
		return []traffic{{dir: "outbound", tls: true, dstWorkload: "web", authority: "web.shop.svc.cluster.local:80", status: 200, count: float64(100 * n), le: 10}}
	}
	f.scrape(t)
	if e := edgeByID(decode[Graph](t, f.get(t, "/api/graph")), "shop/load>shop/web"); e == nil || e.Secured {
		t.Errorf("load→web over TLS without a server identity: %+v, want not secured", e)
	}
}

// TestRouteSplitsPercentAndTargets: percents are shares of the rule's
// weights; a backend selects only its own namespace's workloads, and a
// Service without a selector selects none.
func TestRouteSplitsPercentAndTargets(t *testing.T) {
	snap, err := newFixtureSource().Snapshot(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	w1, w3 := int32(1), int32(3)
	refs := snap.Routes[0].Spec.Rules[0].BackendRefs
	refs[0].Weight, refs[1].Weight = &w1, &w3
	// api-v2 becomes a Service without a selector (endpoints by hand).
	for i := range snap.Services {
		if snap.Services[i].Name == "api-v2" {
			snap.Services[i].Spec.Selector = nil
		}
	}
	// A workload of another namespace whose pods carry api-v1's labels.
	other := snap.Workloads[2]
	other.Namespace = "other"
	other.Pods = slices.Clone(other.Pods)
	p := *other.Pods[0]
	p.Namespace = "other"
	other.Pods[0] = &p
	snap.Workloads = append(snap.Workloads, other)
	snap.PodLabels["other/"+p.Name] = map[string]string{"app": "api", "version": "v1"}
	snap.Services = append(snap.Services, corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "unrelated"}})

	splits := routeSplits(snap)
	if len(splits) != 2 || splits[0].Percent != 25 || splits[1].Percent != 75 {
		t.Fatalf("splits %+v, want 25%% and 75%%", splits)
	}
	if !slices.Equal(splits[0].Targets, []string{"shop/api-v1"}) || len(splits[1].Targets) != 0 {
		t.Errorf("targets %v and %v, want [shop/api-v1] and none", splits[0].Targets, splits[1].Targets)
	}
}

// TestFilterKeepsCallersOfAMatch: the neighbours kept include the callers.
func TestFilterKeepsCallersOfAMatch(t *testing.T) {
	f := newFixture(t)
	g := decode[Graph](t, f.get(t, "/api/graph?filter=api-v1"))
	if !slices.ContainsFunc(g.Nodes, func(n Node) bool { return n.ID == "shop/web" }) {
		t.Errorf("filter api-v1: nodes %+v, want its caller web kept", g.Nodes)
	}
}

// TestIdleViewsAreDroppedAndTheOldestEvicted: beyond MaxViews the least
// recently asked view goes; views idle for longer than Idle are deleted,
// not only skipped; a workload that is gone loses its history.
func TestIdleViewsAreDroppedAndTheOldestEvicted(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	c := &Collector{Source: newFixtureSource(), Now: clk.now, MaxViews: 2}
	for _, ns := range []string{"a", "b", "a", "c"} {
		clk.advance(time.Second)
		c.watch(ns)
	}
	if c.views["a"] == nil || c.views["c"] == nil || len(c.views) != 2 {
		t.Errorf("views %v, want a (asked again) and c", slices.Collect(maps.Keys(c.views)))
	}
	clk.advance(time.Hour)
	c.active()
	if len(c.views) != 0 {
		t.Errorf("%d views kept an hour after the last request, want 0", len(c.views))
	}

	f := newFixture(t)
	if len(f.c.History("shop", "shop/api-v2")) == 0 {
		t.Fatal("no history for api-v2")
	}
	f.src.pods = slices.DeleteFunc(f.src.pods, func(p fixturePod) bool { return p.workload == "api-v2" })
	f.scrape(t)
	if h := f.c.History("shop", "shop/api-v2"); len(h) != 0 {
		t.Errorf("api-v2 is gone but keeps %d points", len(h))
	}
}

// TestOtherSitesRequestsAndHeadOnTheAPIAreRefused: a page of another site
// cannot make the dashboard work for it (its GETs carry Sec-Fetch-Site or
// Origin), a HEAD on the API (which would run a tap nobody reads) is 405,
// and a server without hosts refuses instead of panicking.
func TestOtherSitesRequestsAndHeadOnTheAPIAreRefused(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{http.MethodGet, "/api/graph?namespace=", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{http.MethodGet, "/api/graph", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{http.MethodGet, "/api/graph", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{http.MethodGet, "/api/graph", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:50750"}, http.StatusOK},
		{http.MethodGet, "/api/graph", map[string]string{"Sec-Fetch-Site": "none"}, http.StatusOK},
		{http.MethodHead, "/api/tap?namespace=shop&name=web", nil, http.StatusMethodNotAllowed},
		{http.MethodHead, "/", nil, http.StatusOK},
	} {
		req := httptest.NewRequest(c.method, c.path, nil)
		req.Host = "127.0.0.1:50750"
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s %v: %d, want %d", c.method, c.path, c.hdr, rec.Code, c.want)
		}
	}
	bare := (&Server{Collector: f.c, Source: f.src}).Handler()
	req := httptest.NewRequest(http.MethodGet, "/api/graph", nil)
	rec := httptest.NewRecorder()
	bare.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("a server without hosts: %d, want 403", rec.Code)
	}
}
