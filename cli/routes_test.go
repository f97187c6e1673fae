package cli

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/gamma"
)

// TestRoutesMeasureEachBackend: a route names the Service (and another
// does not); rules and matches read plainly; the mesh's Accepted status is
// shown; each backend counts what its workloads answered for requests to
// the Service, not to other Services.
func TestRoutesMeasureEachBackend(t *testing.T) {
	svcKind, core := gatewayv1.Kind("Service"), gatewayv1.Group("")
	prefix, path, get := gatewayv1.PathMatchPathPrefix, "/api", gatewayv1.HTTPMethodGet
	r := gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "split"}}
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Group: &core, Kind: &svcKind, Name: "web"}}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: &path}, Method: &get}}}}
	r.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: r.Spec.ParentRefs[0], ControllerName: gamma.ControllerName,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionFalse, Reason: "UnsupportedValue", Message: "a filter"}}}}
	if !routeOf(r, "shop", "web") || routeOf(r, "shop", "api") || routeOf(r, "other", "web") {
		t.Error("routeOf")
	}
	if m := matchesOf(r.Spec.Rules[0].Matches); m != "GET PathPrefix /api" {
		t.Errorf("matches %q", m)
	}
	if a := acceptance(r, "shop", "web"); a != "False (UnsupportedValue: a filter)" {
		t.Errorf("accepted %q", a)
	}

	v1 := &routeBackend{Backend: "shop/web-v1:80", Workloads: []string{"web-v1"}}
	v2 := &routeBackend{Backend: "shop/web-v2:80", Workloads: []string{"web-v2"}}
	out := func(authority, workload string, ok bool) proxystats.Series {
		return proxystats.Series{Direction: "outbound", TLS: true, ServerID: "spiffe://td/ns/shop/sa/default", DstWorkload: workload, Authority: authority, Success: ok}
	}
	end := &proxystats.Sample{Responses: map[proxystats.Series]float64{
		out("web.shop.svc.cluster.local:80", "web-v1", true):  90,
		out("web.shop.svc.cluster.local:80", "web-v1", false): 10,
		out("web:80", "web-v2", true):                         20,
		out("web-v1.shop:80", "web-v1", true):                 500, // straight to the backend Service: not the route's
	}, Latency: map[proxystats.Series]proxystats.Histogram{}}
	target := &peer{hosts: []string{"web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local", "web.shop.svc.cluster.local."}}
	measureBackends([]*routeBackend{v1, v2}, []proxystats.Resource{{Pods: []*proxystats.Pod{{End: end}}}}, target, 10*time.Second)
	if v1.RPS != 10 || *v1.Success != 0.9 || v2.RPS != 2 || *v2.Success != 1 {
		t.Errorf("web-v1 %v/s %v, web-v2 %v/s %v; want 10/s at 90 %% and 2/s at 100 %%", v1.RPS, *v1.Success, v2.RPS, *v2.Success)
	}
	var b strings.Builder
	if err := writeRoutes(&b, []*routeBackend{v1, v2}); err != nil || !strings.Contains(b.String(), "90.00%") {
		t.Errorf("table (%v):\n%s", err, b.String())
	}
}
