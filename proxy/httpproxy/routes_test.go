package httpproxy

import (
	"context"
	"net/http"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

func TestWithoutRoutesRequestsGoToTheService(t *testing.T) {
	svc := newEcho(t, "svc", nil)
	tp := serve(t, destination(t, "web.shop:80", nil, nil, svc.addr), Config{})
	res, body := get(t, tp.url+"/anything")
	if res.StatusCode != 200 || decode(t, body).Backend != "svc" {
		t.Errorf("%d %s", res.StatusCode, body)
	}
}

func TestARequestNoRouteTakesIsRefused(t *testing.T) {
	svc, v2 := newEcho(t, "svc", nil), newEcho(t, "v2", nil)
	routes := []endpoints.RouteSpec{{Name: "shop/web", Match: api.RouteMatch{Path: "/v2", PathType: "PathPrefix"}, Backends: []endpoints.BackendSpec{to("v2.shop:80", v2.addr, 1)}}}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, svc.addr), Config{})

	if res, body := get(t, tp.url+"/v2/x"); res.StatusCode != 200 || decode(t, body).Backend != "v2" {
		t.Errorf("a matching request: %d %s", res.StatusCode, body)
	}
	res, body := get(t, tp.url+"/v2example")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("a request no route takes: %d %s, want 404", res.StatusCode, body)
	}
	// gRPC clients understand UNIMPLEMENTED, not 404.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, tp.url+"/pkg.Service/Method", http.NoBody)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	res, _ = do(t, h2c(), req)
	if res.ProtoMajor != 2 || res.StatusCode != 200 || res.Header.Get("Grpc-Status") != "12" || res.Header.Get("Content-Type") != "application/grpc" {
		t.Errorf("a gRPC call no route takes: HTTP/%d %d grpc-status %q", res.ProtoMajor, res.StatusCode, res.Header.Get("Grpc-Status"))
	}
	if n := svc.count.Load(); n != 0 {
		t.Errorf("the Service's own endpoints got %d requests; unmatched requests must not fall through", n)
	}
}

func TestARouteWithNothingToSendToAnswers500(t *testing.T) {
	svc, v1 := newEcho(t, "svc", nil), newEcho(t, "v1", nil)
	routes := []endpoints.RouteSpec{
		{Name: "shop/none", Match: api.RouteMatch{Path: "/none", PathType: "Exact"}},
		{Name: "shop/zero", Match: api.RouteMatch{Path: "/zero", PathType: "Exact"}, Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 0)}},
	}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, svc.addr), Config{})
	for _, path := range []string{"/none", "/zero"} {
		res, body := get(t, tp.url+path)
		if res.StatusCode != http.StatusInternalServerError || res.Header.Get(proxyErrorHeader) != "no backends" {
			t.Errorf("%s: %d %q %s, want 500 from the proxy", path, res.StatusCode, res.Header.Get(proxyErrorHeader), body)
		}
	}
	if svc.count.Load()+v1.count.Load() != 0 {
		t.Error("a request of a route without backends went somewhere")
	}
}

// TestAnInvalidBackendsShareAnswers500AtOnce: the share of a backend that
// names no Service port gets 500 from the proxy at once (not a wait for
// endpoints, then 503); the valid backend's share is served.
func TestAnInvalidBackendsShareAnswers500AtOnce(t *testing.T) {
	svc, v1 := newEcho(t, "svc", nil), newEcho(t, "v1", nil)
	missing := endpoints.BackendSpec{Name: "gone.shop:80", Weight: 1, Invalid: true}
	routes := []endpoints.RouteSpec{
		{Name: "shop/half", Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1), missing}},
	}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, svc.addr), Config{})
	statuses := map[int]int{}
	for range 40 {
		res, _ := get(t, tp.url+"/")
		statuses[res.StatusCode]++
		if res.StatusCode == http.StatusInternalServerError && res.Header.Get(proxyErrorHeader) != "invalid backend" {
			t.Errorf("500 without the proxy's reason: %q", res.Header.Get(proxyErrorHeader))
		}
	}
	if statuses[200] == 0 || statuses[500] == 0 || statuses[200]+statuses[500] != 40 {
		t.Errorf("statuses %v, want only 200 (v1's share) and 500 (the invalid backend's)", statuses)
	}
}

func TestQueryParamsPickTheRoute(t *testing.T) {
	svc, whale, dolphin := newEcho(t, "svc", nil), newEcho(t, "whale", nil), newEcho(t, "dolphin", nil)
	q := func(v string) api.RouteMatch {
		return api.RouteMatch{QueryParams: []api.HeaderMatch{{Name: "animal", Value: v}}}
	}
	routes := []endpoints.RouteSpec{
		{Name: "shop/whale", Match: q("whale"), Backends: []endpoints.BackendSpec{to("whale.shop:80", whale.addr, 1)}},
		{Name: "shop/dolphin", Match: q("dolphin"), Backends: []endpoints.BackendSpec{to("dolphin.shop:80", dolphin.addr, 1)}},
	}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, svc.addr), Config{})
	for _, tc := range []struct{ query, want string }{
		{"animal=whale", "whale"},
		{"animal=dolphin&color=blue", "dolphin"},
		{"animal=dolphin&animal=whale", "dolphin"},
		{"Animal=whale", ""},
		{"", ""},
	} {
		res, body := get(t, tp.url+"/?"+tc.query)
		switch {
		case tc.want == "" && res.StatusCode != 404:
			t.Errorf("?%s: %d, want 404", tc.query, res.StatusCode)
		case tc.want != "" && (res.StatusCode != 200 || decode(t, body).Backend != tc.want):
			t.Errorf("?%s: %d %s, want %s", tc.query, res.StatusCode, body, tc.want)
		case tc.want != "" && decode(t, body).Query != tc.query:
			t.Errorf("?%s: the backend saw the query %q", tc.query, decode(t, body).Query)
		}
	}
}
