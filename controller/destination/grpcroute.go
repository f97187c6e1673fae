package destination

import (
	"fmt"

	"golang.org/x/net/http/httpguts"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/api"
)

// GRPCRoutes is the resource of the GRPCRoutes the watcher follows.
var GRPCRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "grpcroutes"}

// grpcRoute reads an informer's object.
func grpcRoute(obj any) (*gatewayv1.GRPCRoute, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	var r gatewayv1.GRPCRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		return nil, false
	}
	return &r, true
}

// TranslateGRPCRoute reads a GRPCRoute. Its method matches become paths:
// service and method → the exact path "/service/method"; service alone →
// the prefix "/service/" (by whole segment). A method without a service,
// regular expressions and header names that are no HTTP token (as in an
// HTTPRoute's match) are unsupported.
func TranslateGRPCRoute(gr *gatewayv1.GRPCRoute) Translation {
	name := gr.Namespace + "/" + gr.Name
	t := Translation{Backends: grpcBackendRefs(gr)}
	for i, rule := range gr.Spec.Rules {
		if err := t.grpcRule(gr.Namespace, name, i, rule); err != nil {
			t.fail(err)
			return t
		}
	}
	if err := checkHeaderNames(t.Routes); err != nil {
		t.fail(err)
	}
	return t
}

// grpcBackendRefs lists every backend a GRPCRoute names, mirrors included,
// whether or not the route is supported.
func grpcBackendRefs(gr *gatewayv1.GRPCRoute) []BackendRef {
	var out []BackendRef
	for _, rule := range gr.Spec.Rules {
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				out = append(out, readBackendRef(gr.Namespace, f.RequestMirror.BackendRef))
			}
		}
		for _, ref := range rule.BackendRefs {
			out = append(out, readBackendRef(gr.Namespace, ref.BackendObjectReference))
		}
	}
	return out
}

func (t *Translation) grpcRule(ns, name string, i int, rule gatewayv1.GRPCRouteRule) error {
	if rule.SessionPersistence != nil {
		return unsupportedf("rules[%d].sessionPersistence is not supported", i)
	}
	base := api.Route{Name: name, Kind: KindGRPCRoute}
	if rule.Name != nil {
		base.Rule = string(*rule.Name)
	}
	for j, f := range rule.Filters {
		if err := t.grpcFilter(ns, &base, f); err != nil {
			return fmt.Errorf("rules[%d].filters[%d]: %w", i, j, err)
		}
	}
	backends, err := translateBackends(t, ns, i, rule.BackendRefs, func(ref gatewayv1.GRPCBackendRef) ruleBackend {
		b := ruleBackend{ref: ref.BackendObjectReference, weight: ref.Weight}
		for _, f := range ref.Filters {
			b.filters = append(b.filters, backendFilter{typ: string(f.Type), headers: f.RequestHeaderModifier,
				headerModifier: f.Type == gatewayv1.GRPCRouteFilterRequestHeaderModifier})
		}
		return b
	})
	if err != nil {
		return err
	}
	base.Backends = backends
	return addMatches(t, i, base, rule.Matches, func(_ int, m gatewayv1.GRPCRouteMatch) (api.RouteMatch, error) { return grpcMatch(m) })
}

func (t *Translation) grpcFilter(ns string, r *api.Route, f gatewayv1.GRPCRouteFilter) error {
	switch {
	case f.Type == gatewayv1.GRPCRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
		r.RequestHeaders = mergeEdit(r.RequestHeaders, headerEdit(f.RequestHeaderModifier))
	case f.Type == gatewayv1.GRPCRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
		r.ResponseHeaders = mergeEdit(r.ResponseHeaders, headerEdit(f.ResponseHeaderModifier))
	case f.Type == gatewayv1.GRPCRouteFilterRequestMirror && f.RequestMirror != nil:
		m, err := t.mirror(ns, f.RequestMirror)
		if err != nil {
			return err
		}
		r.Mirrors = appendMirror(r.Mirrors, m)
	default:
		return unsupportedf("filter %s is not supported", f.Type)
	}
	return nil
}

func grpcMatch(m gatewayv1.GRPCRouteMatch) (api.RouteMatch, error) {
	var out api.RouteMatch
	if mm := m.Method; mm != nil {
		if mm.Type != nil && *mm.Type != gatewayv1.GRPCMethodMatchExact {
			return out, unsupportedf("method match type %s is not supported", *mm.Type)
		}
		svc, method := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		switch {
		case svc != "" && method != "":
			out.Path, out.PathType = "/"+svc+"/"+method, "Exact"
		case svc != "":
			out.Path, out.PathType = "/"+svc+"/", "PathPrefix"
		case method != "":
			return out, unsupportedf("a method match without a service is not supported")
		}
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gatewayv1.GRPCHeaderMatchExact {
			return out, unsupportedf("header match type %s is not supported", *h.Type)
		}
		if !httpguts.ValidHeaderFieldName(string(h.Name)) {
			return out, unsupportedf("header name %q is not an HTTP token", h.Name)
		}
		out.Headers = append(out.Headers, api.HeaderMatch{Name: string(h.Name), Value: h.Value})
	}
	return out, nil
}
