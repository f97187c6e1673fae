package endpoints

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
)

func TestRouteMatching(t *testing.T) {
	for _, tc := range []struct {
		m      api.RouteMatch
		method string
		path   string
		header http.Header
		want   bool
	}{
		{api.RouteMatch{}, "GET", "/anything", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/api", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/api/v1", nil, true},
		{api.RouteMatch{Path: "/api/", PathType: "PathPrefix"}, "GET", "/api/v1", nil, true},
		{api.RouteMatch{Path: "/api", PathType: "PathPrefix"}, "GET", "/apix", nil, false},
		{api.RouteMatch{Path: "/login", PathType: "Exact"}, "GET", "/login", nil, true},
		{api.RouteMatch{Path: "/login", PathType: "Exact"}, "GET", "/login/", nil, false},
		{api.RouteMatch{Method: "POST"}, "GET", "/", nil, false},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", http.Header{"X-Canary": {"true"}}, true},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", http.Header{"X-Canary": {"yes"}}, false},
		{api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "true"}}}, "GET", "/", nil, false},
	} {
		if got := matches(tc.m, tc.method, tc.path, tc.header); got != tc.want {
			t.Errorf("%+v on %s %s %v: %v, want %v", tc.m, tc.method, tc.path, tc.header, got, tc.want)
		}
	}
}

func TestWeightedBackendChoice(t *testing.T) {
	r := Route{Backends: []Backend{{Name: "v1", Weight: 90, Set: NewSet()}, {Name: "v2", Weight: 10, Set: NewSet()}, {Name: "off", Weight: 0, Set: NewSet()}}}
	rng := rand.New(rand.NewPCG(11, 12))
	counts := map[*Set]int{}
	const n = 100000
	for range n {
		counts[r.choose(rng.IntN)]++
	}
	share := float64(counts[r.Backends[1].Set]) / n
	t.Logf("90/10/0 over %d picks: %d / %d / %d", n, counts[r.Backends[0].Set], counts[r.Backends[1].Set], counts[r.Backends[2].Set])
	if math.Abs(share-0.10) > 0.005 || counts[r.Backends[2].Set] != 0 {
		t.Errorf("v2 share %.4f (want 0.10 ± 0.005); weight 0 got %d", share, counts[r.Backends[2].Set])
	}
	// Every weight at 0: nothing to send to.
	zero := Route{Backends: []Backend{{Name: "v1", Set: NewSet(Endpoint{Addr: "10.0.0.1:80"})}}}
	if set := zero.choose(rng.IntN); set != nil {
		t.Error("a route with only weight-0 backends chose a backend")
	}
}

func TestSetRoutesSendsMatchingRequestsToBackends(t *testing.T) {
	s := NewSet(Endpoint{Addr: "10.0.0.1:80"})
	s.SetRoutes([]RouteSpec{
		{Name: "shop/canary", Match: api.RouteMatch{Headers: []api.HeaderMatch{{Name: "x-canary", Value: "1"}}},
			Backends: []BackendSpec{{Name: "web-v2.shop:80", Weight: 1, Endpoints: []Endpoint{{Addr: "10.0.0.2:80"}}}}},
	})
	canary := httptest.NewRequest("GET", "/", nil)
	canary.Header.Set("x-canary", "1")
	if set, ok := s.Route(canary); !ok {
		t.Error("no backend for the canary request")
	} else if ep, _ := set.Pick(); ep.Addr != "10.0.0.2:80" {
		t.Errorf("canary request went to %s", ep.Addr)
	}
	if set, _ := s.Route(httptest.NewRequest("GET", "/", nil)); set != s {
		t.Error("another request did not go to the Service's own endpoints")
	}
	// Backends keep their state across updates; endpoint updates keep the routes.
	backend := s.Routes()[0].Backends[0].Set
	s.SetRoutes([]RouteSpec{{Name: "shop/canary", Backends: []BackendSpec{{Name: "web-v2.shop:80", Weight: 5, Endpoints: []Endpoint{{Addr: "10.0.0.3:80"}}}}}})
	s.Update([]Endpoint{{Addr: "10.0.0.9:80"}})
	if len(s.Routes()) != 1 || s.Routes()[0].Backends[0].Set != backend {
		t.Error("the backend's set was replaced, or the routes lost")
	}
}
