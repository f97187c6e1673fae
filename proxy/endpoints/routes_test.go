package endpoints

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
)

func TestRouteMatching(t *testing.T) {
	query := func(name, value string) api.RouteMatch {
		return api.RouteMatch{QueryParams: []api.HeaderMatch{{Name: name, Value: value}}}
	}
	for _, tc := range []struct {
		m      api.RouteMatch
		method string
		target string
		header http.Header
		want   bool
	}{
		{api.RouteMatch{}, "GET", "/anything", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/api", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/api/v1", nil, true},
		{api.RouteMatch{Path: "/api/", PathType: "PathPrefix"}, "GET", "/api/v1", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/apix", nil, false},
		{api.RouteMatch{Path: "/v2", PathType: "PathPrefix"}, "GET", "/v2example", nil, false},
		{api.RouteMatch{Path: "/v2", PathType: "PathPrefix"}, "GET", "/v2/", nil, true},
		{api.RouteMatch{Path: "/", PathType: "PathPrefix"}, "GET", "/x", nil, true},
		{api.RouteMatch{Path: "/login", PathType: "Exact"}, "GET", "/login", nil, true},
		{api.RouteMatch{Path: "/login", PathType: "Exact"}, "GET", "/login/", nil, false},
		{api.RouteMatch{Method: "POST"}, "GET", "/", nil, false},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", http.Header{"X-Canary": {"true"}}, true},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", http.Header{"X-Canary": {"yes"}}, false},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", nil, false},
		// Query parameters: exact, the first value counts, names case-sensitive.
		{query("animal", "whale"), "GET", "/?animal=whale", nil, true},
		{query("animal", "whale"), "GET", "/?animal=dolphin", nil, false},
		{query("animal", "whale"), "GET", "/?animal=whale&animal=dolphin", nil, true},
		{query("animal", "whale"), "GET", "/?animal=dolphin&animal=whale", nil, false},
		{query("animal", "whale"), "GET", "/?Animal=whale", nil, false},
		{query("animal", "whale"), "GET", "/", nil, false},
		{query("animal", "whale"), "GET", "/?", nil, false},
		{query("animal", "whale"), "GET", "/?animal", nil, false},
		{query("animal", ""), "GET", "/?animal=", nil, true},
		{query("animal", ""), "GET", "/?other=", nil, false},
		{query("color", "light blue"), "GET", "/?color=light%20blue", nil, true},
		{query("color", "light blue"), "GET", "/?color=light+blue", nil, true},
		{query("a b", "1"), "GET", "/?a%20b=1", nil, true},
		{query("animal", "whale"), "GET", "/?&&x=1&animal=whale", nil, true},
		{query("animal", "whale"), "GET", "/?animal=%zz&animal=whale", nil, false},
		{api.RouteMatch{QueryParams: []api.HeaderMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}, "GET", "/?b=2&a=1", nil, true},
		{api.RouteMatch{QueryParams: []api.HeaderMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}, "GET", "/?a=1", nil, false},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		if got := matches(tc.m, tc.method, u, tc.header); got != tc.want {
			t.Errorf("%+v on %s %s %v: %v, want %v", tc.m, tc.method, tc.target, tc.header, got, tc.want)
		}
	}
}

func TestPrefixRestCutsWholeSegments(t *testing.T) {
	for _, tc := range []struct {
		prefix, path, rest string
		ok                 bool
	}{
		{"/prefix/one", "/prefix/one/two", "/two", true},
		{"/prefix/one", "/prefix/one", "", true},
		{"/prefix/one/", "/prefix/one/", "/", true},
		{"/prefix/one", "/prefix/onetwo", "", false},
		{"/", "/x", "/x", true},
		{"", "/x", "/x", true},
		{"/v2", "/v2example", "", false},
	} {
		rest, ok := PrefixRest(tc.prefix, tc.path)
		if rest != tc.rest || ok != tc.ok {
			t.Errorf("PrefixRest(%q, %q) = %q, %v; want %q, %v", tc.prefix, tc.path, rest, ok, tc.rest, tc.ok)
		}
	}
}

func TestWeightedBackendChoice(t *testing.T) {
	r := Route{Backends: []Backend{{Name: "v1", Weight: 90, Set: NewSet()}, {Name: "v2", Weight: 10, Set: NewSet()}, {Name: "off", Weight: 0, Set: NewSet()}}}
	rng := rand.New(rand.NewPCG(11, 12))
	counts := map[*Set]int{}
	const n = 100000
	for range n {
		counts[r.choose(rng.IntN).Set]++
	}
	share := float64(counts[r.Backends[1].Set]) / n
	t.Logf("90/10/0 over %d picks: %d / %d / %d", n, counts[r.Backends[0].Set], counts[r.Backends[1].Set], counts[r.Backends[2].Set])
	if math.Abs(share-0.10) > 0.005 || counts[r.Backends[2].Set] != 0 {
		t.Errorf("v2 share %.4f (want 0.10 ± 0.005); weight 0 got %d", share, counts[r.Backends[2].Set])
	}
	// Every weight at 0: nothing to send to.
	zero := Route{Backends: []Backend{{Name: "v1", Set: NewSet(Endpoint{Addr: "10.0.0.1:80"})}}}
	if b := zero.choose(rng.IntN); b != nil {
		t.Error("a route with only weight-0 backends chose a backend")
	}
}

func TestSetRoutesSendsMatchingRequestsToBackends(t *testing.T) {
	s := NewSet(Endpoint{Addr: "10.0.0.1:80"})
	if route, found := s.Route(httptest.NewRequest("GET", "/", nil)); route != nil || !found {
		t.Error("a destination without routes does not send its requests to itself")
	}
	s.SetRoutes([]RouteSpec{
		{Name: "shop/canary", Match: api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "1"}}},
			Backends: []BackendSpec{{Name: "web-v2.shop:80", Weight: 1, Endpoints: []Endpoint{{Addr: "10.0.0.2:80"}}}}},
	})
	canary := httptest.NewRequest("GET", "/", nil)
	canary.Header.Set("x-canary", "1")
	if route, found := s.Route(canary); !found || route == nil {
		t.Error("no route for the canary request")
	} else if ep, _ := route.Choose().Set.Pick(); ep.Addr != "10.0.0.2:80" {
		t.Errorf("canary request went to %s", ep.Addr)
	}
	if route, found := s.Route(httptest.NewRequest("GET", "/", nil)); found || route != nil {
		t.Error("a request no route matches was not refused")
	}
	// Backends keep their state across updates; endpoint updates keep the routes.
	backend := s.Routes()[0].Backends[0].Set
	s.SetRoutes([]RouteSpec{{Name: "shop/canary", Backends: []BackendSpec{{Name: "web-v2.shop:80", Weight: 5, Endpoints: []Endpoint{{Addr: "10.0.0.3:80"}}}}}})
	s.Update([]Endpoint{{Addr: "10.0.0.9:80"}})
	if len(s.Routes()) != 1 || s.Routes()[0].Backends[0].Set != backend {
		t.Error("the backend's set was replaced, or the routes lost")
	}
}

func TestSetRoutesKeepsMirrorSetsAndTranslatesPolicy(t *testing.T) {
	s := NewSet(Endpoint{Addr: "10.0.0.1:80"})
	spec := RouteSpec{
		Name:     "shop/web",
		Timeouts: &api.RouteTimeouts{RequestMs: 1500, BackendRequestMs: 500},
		Retry:    &api.RouteRetry{Codes: []int{500, 503}, Attempts: 2, BackoffMs: 20},
		Mirrors:  []MirrorSpec{{Backend: BackendSpec{Name: "mirror.shop:80", Endpoints: []Endpoint{{Addr: "10.0.0.5:80"}}}}},
		Backends: []BackendSpec{{Name: "web.shop:80", Weight: 1, Endpoints: []Endpoint{{Addr: "10.0.0.2:80"}}}},
	}
	if s.Budget() != nil {
		t.Fatal("a destination that retries nothing has a retry budget")
	}
	s.SetRoutes([]RouteSpec{spec})
	r := s.Routes()[0]
	if r.RequestTimeout != 1500*time.Millisecond || r.TryTimeout != 500*time.Millisecond {
		t.Errorf("timeouts %v / %v", r.RequestTimeout, r.TryTimeout)
	}
	if r.Retry == nil || r.Retry.Limit != 2 || r.Retry.Backoff != 20*time.Millisecond || len(r.Retry.HTTP) != 2 || r.Retry.HTTP[1].From != 503 {
		t.Errorf("retry %+v", r.Retry)
	}
	if s.Budget() == nil {
		t.Error("a route that retries got no retry budget")
	}
	if len(r.Mirrors) != 1 || r.Mirrors[0].PerMillion != api.PerMillionAll {
		t.Fatalf("mirrors %+v", r.Mirrors)
	}
	mirror := r.Mirrors[0].Backend.Set
	spec.Mirrors[0].PerMillion = 300
	s.SetRoutes([]RouteSpec{spec})
	if m := s.Routes()[0].Mirrors[0]; m.Backend.Set != mirror || m.PerMillion != 300 {
		t.Error("the mirror's set was replaced across an update, or its share lost")
	}
	s.SetRoutes(nil)
	if s.Budget() != nil {
		t.Error("the retry budget outlived the route that retried")
	}
}

// BenchmarkRoute is the routing decision of a request among three routes,
// the last one taking it: it allocates nothing.
func BenchmarkRoute(b *testing.B) {
	s := NewSet(Endpoint{Addr: "10.0.0.1:80"})
	backends := []BackendSpec{{Name: "a", Weight: 1, Endpoints: []Endpoint{{Addr: "10.0.0.2:80"}}}, {Name: "b", Weight: 1, Endpoints: []Endpoint{{Addr: "10.0.0.3:80"}}}}
	s.SetRoutes([]RouteSpec{
		{Match: api.RouteMatch{Path: "/login", PathType: "Exact"}, Backends: backends},
		{Match: api.RouteMatch{QueryParams: []api.HeaderMatch{{Name: "v", Value: "2"}}}, Backends: backends},
		{Match: api.RouteMatch{Path: "/api", PathType: "PathPrefix", Headers: []api.HeaderMatch{{Name: "x-user", Value: "a"}}}, Backends: backends},
	})
	r := httptest.NewRequest("GET", "/api/items?v=1&page=2", nil)
	r.Header.Set("X-User", "a")
	b.ReportAllocs()
	for b.Loop() {
		route, _ := s.Route(r)
		if route == nil || route.Choose() == nil {
			b.Fatal("not routed")
		}
	}
}
