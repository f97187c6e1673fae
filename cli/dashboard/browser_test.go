package dashboard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/browsertest"
)

// TestPageInARealBrowser loads the page in headless Chromium over the
// fixture and checks what it shows: every node and edge drawn, padlocks,
// success rates as the API gives them, colours by health, the split's
// weights, a workload page with its pods and a live tap, the identity and
// health pages; and no script error or CSP violation on the way.
func TestPageInARealBrowser(t *testing.T) {
	f := newFixture(t)
	f.src.tap = []api.TapEvent{{Type: "start", ID: 7, Method: "GET", Path: "/tapped", Direction: "inbound"}, {Type: "end", ID: 7, Status: 503, LatencyMs: 2}}
	f.src.issuer = f.src.identityIssuer()
	f.src.issuers["api-v2-77a-ccccc"] = "0ld"
	srv := f.serve(t)
	b := browsertest.New(t, 1400, 900)

	b.Navigate(t, srv.URL+"/#/topology?namespace=shop")
	b.WaitFor(t, "the graph", `!!(window.meshctlDashboard && window.meshctlDashboard.ready > 0)`, 20*time.Second)
	ids := browsertest.Eval[[]string](t, b, `window.meshctlDashboard.cy.nodes().map(n => n.id()).sort()`)
	want := []string{"external:example.com:443", "shop/api-v1", "shop/api-v2", "shop/legacy", "shop/load", "shop/web", "svc:shop/api", "unmeshed:shop"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("nodes drawn %v, want %v", ids, want)
	}
	type edge struct {
		ID, Health, Label string
		Secured, Split    bool
	}
	edges := browsertest.Eval[[]edge](t, b, `window.meshctlDashboard.cy.edges().map(e => ({ID: e.id(), Health: e.data('health'), Label: e.data('label') || '', Secured: !!e.data('secured'), Split: !!e.data('split')}))`)
	byID := map[string]edge{}
	splits := 0
	for _, e := range edges {
		byID[e.ID] = e
		if e.Split {
			splits++
		}
	}
	if e := byID["shop/load>shop/web"]; !e.Secured || e.Health != "warn" || !strings.Contains(e.Label, " 98") || !strings.Contains(e.Label, "🔒") {
		t.Errorf("load→web drawn as %+v, want secured, warn, 98%% with a padlock", e)
	}
	if e := byID["shop/web>external:example.com:443"]; e.Secured || strings.Contains(e.Label, "🔒") || e.Health != "ok" {
		t.Errorf("web→example.com drawn as %+v, want no padlock", e)
	}
	if splits != 2 {
		t.Errorf("%d split edges drawn, want 2: %+v", splits, edges)
	}
	cell := browsertest.Eval[string](t, b, `document.querySelector('tr[data-edge-id="shop/load>shop/web"] td[data-col="success"]').textContent.trim()`)
	if cell != "98.00%" {
		t.Errorf("edges table: load→web success %q, want 98.00%%", cell)
	}
	weights := browsertest.Eval[[]string](t, b, `[...document.querySelectorAll('#splits-table tr[data-split-id] td[data-col="weight"]')].map(td => td.textContent.trim())`)
	if strings.Join(weights, ",") != "90,10" {
		t.Errorf("split weights shown %v, want 90 and 10", weights)
	}
	// A workload that fails turns red, on the next refresh, without relayout.
	pos := browsertest.Eval[map[string]float64](t, b, `window.meshctlDashboard.cy.getElementById('shop/load').position()`)
	f.src.mu.Lock()
	f.src.pods[3].series = func(n int) []traffic {
		return []traffic{{dir: "inbound", tls: true, clientID: webID, status: 500, count: float64(5 * n), le: 10}}
	}
	f.src.mu.Unlock()
	f.scrape(t)
	f.scrape(t)
	b.WaitFor(t, "api-v2 to turn red", `window.meshctlDashboard.cy.getElementById('shop/api-v2').data('health') === 'fail'`, 20*time.Second)
	if pos2 := browsertest.Eval[map[string]float64](t, b, `window.meshctlDashboard.cy.getElementById('shop/load').position()`); pos2["x"] != pos["x"] || pos2["y"] != pos["y"] {
		t.Errorf("a refresh moved the load node from %v to %v", pos, pos2)
	}
	shots := os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots != "" {
		b.Screenshot(t, filepath.Join(shots, "fixture-topology.png"))
	}

	// The workload page.
	b.Navigate(t, srv.URL+"/#/workload/shop/web")
	b.WaitFor(t, "web's pods", `!!document.querySelector('tr[data-pod="web-5c6b-aaaaa"]')`, 20*time.Second)
	b.WaitFor(t, "the charts", `!!document.querySelector('#chart-success canvas') && !!document.querySelector('#chart-rps canvas') && !!document.querySelector('#chart-latency canvas')`, 20*time.Second)
	b.WaitFor(t, "the live tap", `[...document.querySelectorAll('#tap-table tbody tr td[data-col="status"]')].some(td => td.textContent.includes('503'))`, 20*time.Second)
	if p := browsertest.Eval[string](t, b, `document.querySelector('#tap-table tbody tr td[data-col="path"]').textContent`); p != "/tapped" {
		t.Errorf("tap row path %q, want /tapped", p)
	}
	if shots != "" {
		b.Screenshot(t, filepath.Join(shots, "fixture-workload.png"))
	}

	b.Navigate(t, srv.URL+"/#/identity")
	b.WaitFor(t, "the proxy on the old issuer", `!!document.querySelector('#identity-old-issuer') && document.querySelector('#identity-old-issuer').textContent.includes('api-v2-77a-ccccc')`, 20*time.Second)
	b.Navigate(t, srv.URL+"/#/health")
	b.WaitFor(t, "the health summary", `!!document.querySelector('#health-summary') && document.querySelector('#health-summary').textContent.includes('failed')`, 20*time.Second)

	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}
}

// TestPageShowsHostileNamesAsText: names and paths from the cluster and
// from clients are text, never markup.
func TestPageShowsHostileNamesAsText(t *testing.T) {
	f := newFixture(t)
	evil := `<img src=x onerror="window.pwned=1">`
	f.src.tap = []api.TapEvent{{Type: "start", ID: 1, Method: "GET", Path: "/" + evil, Authority: evil, Direction: "inbound"}, {Type: "end", ID: 1, Status: 200}}
	f.src.mu.Lock()
	f.src.pods[1].series = func(n int) []traffic {
		return []traffic{{dir: "outbound", tls: false, authority: evil, status: 200, count: float64(10 * n), le: 10}}
	}
	f.src.mu.Unlock()
	f.scrape(t)
	f.scrape(t)
	srv := f.serve(t)
	b := browsertest.New(t, 1200, 800)
	b.Navigate(t, srv.URL+"/#/topology?namespace=shop")
	b.WaitFor(t, "the graph", `!!(window.meshctlDashboard && window.meshctlDashboard.ready > 0)`, 20*time.Second)
	b.Navigate(t, srv.URL+"/#/workload/shop/web")
	b.WaitFor(t, "the tap row", `document.querySelectorAll('#tap-table tbody tr').length > 0`, 20*time.Second)
	if pwned := browsertest.Eval[bool](t, b, `window.pwned === 1 || document.querySelectorAll('img[src="x"]').length > 0`); pwned {
		t.Error("a name from the cluster became markup")
	}
}

// TestTokenLinkInARealBrowser opens the address `meshctl dashboard`
// prints, with its token in the fragment, in headless Chromium: the page
// renders the route, the token leaves the address bar, no cookie is set,
// the API and the live tap (a fetch stream, as an EventSource cannot send
// the header) work with the token from the tab's storage, another server
// on another port of 127.0.0.1 gets neither the token nor a cookie, and a
// browser without the token is told where to find it.
func TestTokenLinkInARealBrowser(t *testing.T) {
	f := newFixture(t)
	f.s.Token = NewToken()
	f.src.tap = []api.TapEvent{{Type: "start", ID: 9, Method: "GET", Path: "/with-token", Direction: "inbound"}, {Type: "end", ID: 9, Status: 201, LatencyMs: 1}}
	srv := f.serve(t)
	// Another user's server on another port of the same address.
	var seen struct {
		sync.Mutex
		requests int
		headers  []string
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Lock()
		seen.requests++
		for _, h := range []string{"Cookie", "Authorization"} {
			if v := r.Header.Get(h); v != "" {
				seen.headers = append(seen.headers, h+": "+v)
			}
		}
		seen.Unlock()
		fmt.Fprint(w, "<!doctype html><title>another server</title>")
	}))
	t.Cleanup(other.Close)

	b := browsertest.New(t, 1200, 800)
	b.Navigate(t, srv.URL+"/#/topology?namespace=shop&token="+f.s.Token)
	b.WaitFor(t, "the graph", `!!(window.meshctlDashboard && window.meshctlDashboard.ready > 0) && window.meshctlDashboard.cy.nodes().length > 0`, 20*time.Second)
	if loc := browsertest.Eval[string](t, b, `location.search + location.hash`); loc != "#/topology?namespace=shop" {
		t.Errorf("the address after the token was taken: %q, want only the route #/topology?namespace=shop", loc)
	}
	if c := browsertest.Eval[string](t, b, `document.cookie`); c != "" {
		t.Errorf("the page has cookies %q, want none", c)
	}
	// The graph exported: a download, fetched with the token.
	browsertest.Eval[bool](t, b, `(() => { window.__downloads = []; const orig = URL.createObjectURL;
		URL.createObjectURL = (blob) => { blob.text().then((x) => window.__downloads.push(x)); return orig(blob); };
		document.getElementById('export-dot').click(); return true; })()`)
	b.WaitFor(t, "the DOT export", `window.__downloads.length === 1 && window.__downloads[0].startsWith('digraph')`, 10*time.Second)
	// A new document in the same tab (not a change of fragment): the token
	// comes from the tab's sessionStorage.
	b.Navigate(t, "about:blank")
	b.Navigate(t, srv.URL+"/#/workload/shop/web")
	b.WaitFor(t, "the live tap, with the token from the tab's storage",
		`[...document.querySelectorAll('#tap-table tbody tr td[data-col="path"]')].some(td => td.textContent === '/with-token')`, 20*time.Second)
	// Leaving the page stops its tap: the server's slot is given back.
	if n := len(f.s.taps); n != 1 {
		t.Errorf("%d taps open on the workload page, want 1", n)
	}
	b.Navigate(t, srv.URL+"/#/health")
	b.WaitFor(t, "the health page", `!!document.querySelector('#health-summary')`, 20*time.Second)
	eventually(t, "the tap's slot given back after the page left", 10*time.Second, func() bool { return len(f.s.taps) == 0 })
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}

	// The same tab goes to the other port: that server sees no token and
	// no cookie, and its scripts cannot read the dashboard's storage.
	b.Navigate(t, other.URL+"/")
	b.WaitFor(t, "the other server's page", `document.title === 'another server'`, 10*time.Second)
	if v := browsertest.Eval[string](t, b, `String(sessionStorage.getItem('meshctl-dashboard-token')) + ' ' + document.cookie`); strings.Contains(v, f.s.Token) {
		t.Errorf("another port's page reads the token: %q", v)
	}
	seen.Lock()
	if seen.requests == 0 || len(seen.headers) > 0 {
		t.Errorf("the server on another port got %d requests with %q, want requests with neither a cookie nor the token", seen.requests, seen.headers)
	}
	seen.Unlock()

	// A browser that never had the token: the page loads and says why
	// it shows nothing.
	b2 := browsertest.New(t, 1200, 800)
	b2.Navigate(t, srv.URL+"/#/topology?namespace=shop")
	b2.WaitFor(t, "the banner naming the token", `!document.getElementById('error-banner').hidden && document.getElementById('error-list').textContent.includes('needs its token')`, 20*time.Second)
	// The link pasted into that open tab changes only the fragment: its
	// token is taken all the same, and leaves the address bar.
	browsertest.Eval[string](t, b2, fmt.Sprintf(`location.hash = %q`, "#/topology?namespace=shop&token="+f.s.Token))
	b2.WaitFor(t, "the graph once the link is pasted", `!!(window.meshctlDashboard && window.meshctlDashboard.cy) && window.meshctlDashboard.cy.nodes().length > 0`, 20*time.Second)
	if loc := browsertest.Eval[string](t, b2, `location.hash`); strings.Contains(loc, "token") {
		t.Errorf("the pasted link's token stayed in the address bar: %q", loc)
	}
}

// TestRefusedTapIsNotAskedAgain: a tap the server refuses (every slot
// taken: 429) is shown and not asked for again and again.
func TestRefusedTapIsNotAskedAgain(t *testing.T) {
	f := newFixture(t)
	s := &Server{Collector: f.c, Source: f.src, Namespace: "shop", MaxTaps: 1}
	h := s.Handler()
	var taps atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/tap" {
			taps.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	s.SetHosts(LoopbackHosts(port))
	// Another page holds the one slot.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/tap?namespace=shop&name=web", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the first tap: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })

	b := browsertest.New(t, 1200, 800)
	b.Navigate(t, srv.URL+"/#/workload/shop/web")
	b.WaitFor(t, "the refusal shown", `document.getElementById('error-list').textContent.includes('429') && document.getElementById('tap-state').textContent === 'stopped'`, 20*time.Second)
	// An EventSource, or a retry loop, would ask again within 3 s.
	never(t, "the refused tap asked again", 4*time.Second, func() bool { return taps.Load() > 2 })
}
