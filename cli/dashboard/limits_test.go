package dashboard

// Tests of what bounds the dashboard's work and who may use it: the
// token, the proxies asked at once across pages, one identity run shared,
// namespaces read at once, the proxies a workload page asks, and tap
// slots given back when a page leaves.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// eventually polls cond every 5 ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// never fails when cond holds at any poll within d: for what must not
// happen while the test holds everything else still.
func never(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			t.Fatalf("%s", what)
		}
	}
}

func TestTokenIsRequired(t *testing.T) {
	f := newFixture(t)
	const token = "s3cr3t-t0ken-0123456789"
	var logs bytes.Buffer
	s := &Server{Collector: f.c, Source: f.src, Namespace: "shop", Token: token,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	s.SetHosts(LoopbackHosts("50750"))
	h := s.Handler()
	serve := func(target string, edit func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1:50750"
		if edit != nil {
			edit(req)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	bearer := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+v) }
	}
	cookie := func(name, v string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: name, Value: v}) }
	}
	for _, c := range []struct {
		name   string
		target string
		edit   func(*http.Request)
		want   int
	}{
		// The page's own files hold no data: they are served to anyone
		// who may reach the port (and has the right Host).
		{"no token, the page", "/", nil, http.StatusOK},
		{"no token, a script", "/main.js", nil, http.StatusOK},
		{"no token, the API", "/api/graph", nil, http.StatusUnauthorized},
		{"no token, the tap", "/api/tap?namespace=shop&name=web", nil, http.StatusUnauthorized},
		{"no token, /api itself", "/api", nil, http.StatusUnauthorized},
		{"a wrong bearer", "/api/graph", bearer(token + "x"), http.StatusUnauthorized},
		{"a prefix", "/api/graph", bearer(token[:len(token)-1]), http.StatusUnauthorized},
		{"an empty bearer", "/api/graph", bearer(""), http.StatusUnauthorized},
		{"the token as Basic", "/api/graph", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+token) }, http.StatusUnauthorized},
		{"the token without the scheme", "/api/graph", func(r *http.Request) { r.Header.Set("Authorization", token) }, http.StatusUnauthorized},
		// A browser hands 127.0.0.1's cookies to every port of it, and a
		// query ends up in logs and history: neither carries the token.
		{"the token in a cookie", "/api/graph", cookie("meshctl-dashboard-50750", token), http.StatusUnauthorized},
		{"the token in the query", "/api/graph?token=" + token, nil, http.StatusUnauthorized},
		{"the bearer", "/api/graph", bearer(token), http.StatusOK},
		{"the bearer, the tap of nothing", "/api/tap?namespace=shop&name=nothing", bearer(token), http.StatusNotFound},
		{"the token, but another Host", "/api/graph", func(r *http.Request) { bearer(token)(r); r.Host = "evil.example:50750" }, http.StatusForbidden},
		// The Host is checked first: a rebound name learns nothing, not
		// even that a token is wanted.
		{"another Host, no token", "/api/graph", func(r *http.Request) { r.Host = "evil.example:50750" }, http.StatusForbidden},
		{"another Host, the page", "/", func(r *http.Request) { r.Host = "evil.example:50750" }, http.StatusForbidden},
	} {
		if rec := serve(c.target, c.edit); rec.Code != c.want {
			t.Errorf("%s: GET %s: %d, want %d", c.name, c.target, rec.Code, c.want)
		}
	}
	// Paths the mux cleans to the API's are the API's: no data without
	// the token.
	for _, target := range []string{"//api/graph", "/./api/graph", "/x/../api/graph", "/api//graph", "/api/./graph"} {
		if rec := serve(target, nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d %.80q, want 401", target, rec.Code, rec.Body.String())
		}
	}
	// The scheme's name in any case.
	if rec := serve("/api/graph", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) }); rec.Code != http.StatusOK {
		t.Errorf("\"bearer TOKEN\": %d, want 200", rec.Code)
	}
	// No cookie is ever set.
	if rec := serve("/", nil); len(rec.Result().Cookies()) != 0 {
		t.Errorf("the page set cookies %v", rec.Result().Cookies())
	}
	// The refusals above are warned about, spaced: one line for many, and
	// never with the token or what was sent in its place.
	// Of every kind: any page the user visits can send requests here in
	// a loop (an <img> to another Host, a no-cors fetch).
	logs.Reset()
	for i := range 100 {
		switch i % 4 {
		case 0:
			serve("/api/graph", bearer(token+"x"))
		case 1:
			serve("/", func(r *http.Request) { r.Host = "evil.example:50750" })
		case 2:
			serve("/", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") })
		case 3:
			serve("/", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") })
		}
	}
	if n := strings.Count(logs.String(), "request refused"); n > 1 {
		t.Errorf("100 refusals within %s logged %d warnings, want at most 1:\n%s", refusalLogEvery, n, logs.String())
	}
	s.refusalLog = &rate.Sometimes{Interval: time.Nanosecond} // every refusal logged from here
	serve("/api/graph", bearer(token+"x"))
	serve("/api/graph?token="+token, nil)
	serve("/api/graph", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "meshctl-dashboard-50750", Value: token}) })
	if n := strings.Count(logs.String(), "request refused"); n < 3 {
		t.Errorf("refusals with the interval past logged %d warnings, want 3: %s", n, logs.String())
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the log holds the token: %s", logs.String())
	}
}

// gatedSource is the shop fixture with 100 meshed pods on the identity
// page and 60 in web's workload, whose proxies answer only once the test
// opens the gate; it counts proxies asked at once and identity runs.
type gatedSource struct {
	*fixtureSource
	gate               chan struct{}
	proxies            gauge
	identityRuns, asks atomic.Int32
}

// gauge counts what is under way, and the most at once.
type gauge struct{ now, max atomic.Int32 }

// enter counts one more under way until the returned func is called.
func (g *gauge) enter() (leave func()) {
	n := g.now.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
	return func() { g.now.Add(-1) }
}

func (g *gatedSource) ProxyIdentity(ctx context.Context, ns, pod string) (api.IdentityInfo, error) {
	g.asks.Add(1)
	defer g.proxies.enter()()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return api.IdentityInfo{}, ctx.Err()
	}
	return api.IdentityInfo{SPIFFEID: "spiffe://cluster.local/ns/" + ns + "/sa/x", IssuerFingerprint: "f"}, nil
}

func (g *gatedSource) Identity(context.Context) (*IdentityObjects, error) {
	g.identityRuns.Add(1)
	objs := &IdentityObjects{}
	for i := range 100 {
		objs.MeshedPods = append(objs.MeshedPods, fmt.Sprintf("shop/p-%d", i))
	}
	return objs, nil
}

func (g *gatedSource) Workload(ctx context.Context, ns, name string) (*WorkloadObjects, error) {
	objs, err := g.fixtureSource.Workload(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	objs.Pods = nil
	for i := range 60 {
		objs.Pods = append(objs.Pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i), Labels: map[string]string{meshnames.VersionLabel: "v1"}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		})
	}
	return objs, nil
}

func TestProxyReadsAreBoundedAcrossPages(t *testing.T) {
	f := newFixture(t)
	src := &gatedSource{fixtureSource: f.src, gate: make(chan struct{})}
	s := &Server{Collector: f.c, Source: src, Namespace: "shop"}
	s.SetHosts(LoopbackHosts("50750"))
	h := s.Handler()
	get := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1:50750"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	targets := []string{"/api/identity", "/api/identity", "/api/identity",
		"/api/workload?namespace=shop&name=web", "/api/workload?namespace=shop&name=web", "/api/workload?namespace=shop&name=api-v1"}
	recs := make([]*httptest.ResponseRecorder, len(targets))
	var wg sync.WaitGroup
	var entered atomic.Int32
	for i, target := range targets {
		wg.Go(func() {
			entered.Add(1)
			recs[i] = get(target)
		})
	}
	eventually(t, "proxies asked", 5*time.Second, func() bool {
		return entered.Load() == int32(len(targets)) && src.proxies.now.Load() >= 8
	})
	// Six pages want 100 + 3×50 proxies; only 8 at once, for all of them
	// (the number the README gives).
	never(t, "more proxies asked at once than the bound", 200*time.Millisecond, func() bool { return src.proxies.max.Load() > 8 })
	if n := src.identityRuns.Load(); n != 1 {
		t.Errorf("three identity pages at once read the identity %d times, want once (one run shared)", n)
	}
	close(src.gate)
	wg.Wait()
	if m := src.proxies.max.Load(); m != 8 {
		t.Errorf("%d proxies asked at once at most, want 8", m)
	}
	// 100 for the shared identity run, 50 for each workload page.
	if n := src.asks.Load(); n != 100+3*50 {
		t.Errorf("%d proxies asked, want 250", n)
	}
	for i, rec := range recs[:3] {
		id := decode[Identity](t, rec)
		if id.Proxies != 100 || len(id.Unread) != 0 {
			t.Errorf("identity page %d: %d proxies, %d unread; want 100 and none", i, id.Proxies, len(id.Unread))
		}
	}
	w := decode[Workload](t, recs[3])
	read, notRead := 0, 0
	for _, p := range w.Pods {
		switch {
		case p.Identity != nil:
			read++
		case strings.Contains(p.IdentityError, "only the first 50"):
			notRead++
		}
	}
	if len(w.Pods) != 60 || read != 50 || notRead != 10 {
		t.Errorf("web's 60 pods: %d listed, %d certificates read, %d said not read; want 60, 50 and 10", len(w.Pods), read, notRead)
	}
}

// gatedSnapshots is the shop fixture whose namespace reads wait for the
// test's gate, counting those under way.
type gatedSnapshots struct {
	*fixtureSource
	gate  chan struct{}
	reads gauge
}

func (g *gatedSnapshots) Snapshot(ctx context.Context, ns string) (*Snapshot, error) {
	defer g.reads.enter()()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.fixtureSource.Snapshot(ctx, ns)
}

func TestFirstScrapesOfManyNamespacesAreBounded(t *testing.T) {
	src := &gatedSnapshots{fixtureSource: newFixtureSource(), gate: make(chan struct{})}
	c := &Collector{Source: src}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Graph(context.Background(), fmt.Sprintf("ns-%d", i)) })
	}
	eventually(t, "namespaces read", 5*time.Second, func() bool { return src.reads.now.Load() >= 2 })
	never(t, "more than 2 namespaces read at once", 200*time.Millisecond, func() bool { return src.reads.max.Load() > 2 })
	close(src.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("ns-%d: %v", i, err)
		}
	}
	// MaxScrapes, when set, is the bound.
	src3 := &gatedSnapshots{fixtureSource: newFixtureSource(), gate: make(chan struct{})}
	c3 := &Collector{Source: src3, MaxScrapes: 3}
	for i := range 6 {
		wg.Go(func() { _, _ = c3.Graph(context.Background(), fmt.Sprintf("ns-%d", i)) })
	}
	eventually(t, "3 namespaces read with MaxScrapes 3", 5*time.Second, func() bool { return src3.reads.now.Load() == 3 })
	never(t, "more than 3 namespaces read at once with MaxScrapes 3", 200*time.Millisecond, func() bool { return src3.reads.max.Load() > 3 })
	close(src3.gate)
	wg.Wait()
	// A first read that gives up waiting for its turn says so.
	src2 := &gatedSnapshots{fixtureSource: newFixtureSource(), gate: make(chan struct{})}
	c2 := &Collector{Source: src2, MaxScrapes: 1}
	go func() { _, _ = c2.Graph(context.Background(), "busy") }()
	eventually(t, "the first read under way", 5*time.Second, func() bool { return src2.reads.now.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c2.Graph(ctx, "waiting"); err == nil {
		t.Error("a read that could not start before its context ended: no error")
	}
	close(src2.gate)
}

func TestTapSlotsAreGivenBackWhenPagesLeave(t *testing.T) {
	f := newFixture(t)
	srv := f.serve(t)
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/tap?namespace=shop&name=web", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	for round := range 3 {
		var cancels []context.CancelFunc
		for i := range f.s.MaxTaps {
			resp, cancel := open()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("round %d: tap %d: %d, want 200 (slots not given back?)", round, i, resp.StatusCode)
			}
			cancels = append(cancels, func() { cancel(); resp.Body.Close() })
		}
		resp, cancel := open()
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("round %d: a tap beyond %d: %d, want 429", round, f.s.MaxTaps, resp.StatusCode)
		}
		for _, c := range cancels {
			c()
		}
		eventually(t, "every slot given back", 5*time.Second, func() bool { return len(f.s.taps) == 0 })
	}
}
