package destination

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/api"
)

// HTTPRoutes is the resource of the HTTPRoutes the watcher follows.
var HTTPRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// parentIndex indexes HTTPRoutes by the Services ("ns/name") they attach to.
const parentIndex = "parentService"

// WithRoutes makes the watcher follow HTTPRoutes from inf (unstructured
// objects of HTTPRoutes): those whose parentRefs name a Service shape the
// Service's traffic (GAMMA). Call it before the informer starts.
func (w *Watcher) WithRoutes(inf cache.SharedIndexInformer) error {
	if err := inf.AddIndexers(cache.Indexers{parentIndex: func(obj any) ([]string, error) {
		r, ok := httpRoute(obj)
		if !ok {
			return nil, nil
		}
		return parentServices(r), nil
	}}); err != nil {
		return err
	}
	notify := func(obj any) {
		if r, ok := httpRoute(tombstone(obj)); ok {
			for _, key := range parentServices(r) {
				w.notify(key)
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, DeleteFunc: notify,
		UpdateFunc: func(o, n any) { notify(o); notify(n) },
	}); err != nil {
		return err
	}
	w.routes = inf
	return nil
}

// httpRoute reads an informer's object.
func httpRoute(obj any) (*gatewayv1.HTTPRoute, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	var r gatewayv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		return nil, false
	}
	return &r, true
}

// isService reports whether a reference's group and kind name a Service
// (the default kind when unset, as for backendRefs).
func isService(group *gatewayv1.Group, kind *gatewayv1.Kind, kindDefault string) bool {
	g, k := "", kindDefault
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	return (g == "" || g == "core") && k == "Service"
}

// parentServices are the "ns/name" keys of the Services a route attaches
// to. Only a route in the Service's own namespace shapes the Service's
// traffic for every client (a producer route): a route elsewhere must not
// take over another namespace's Service.
func parentServices(r *gatewayv1.HTTPRoute) []string {
	var out []string
	for _, p := range r.Spec.ParentRefs {
		if !isService(p.Group, p.Kind, "Gateway") || (p.Namespace != nil && string(*p.Namespace) != r.Namespace) {
			continue
		}
		out = append(out, r.Namespace+"/"+string(p.Name))
	}
	return out
}

// backendKey is the subscription key of a Backend's Service ("name.ns:port").
func backendKey(service string) string {
	hostPort := service
	if i := strings.LastIndex(service, ":"); i >= 0 {
		hostPort = service[:i]
	}
	name, ns, _ := strings.Cut(hostPort, ".")
	return ns + "/" + name
}

// routesFor lists the routes attached to a Service port, most specific
// match first.
func (w *Watcher) routesFor(svc *corev1.Service, port corev1.ServicePort) []api.Route {
	if w.routes == nil {
		return nil
	}
	objs, _ := w.routes.GetIndexer().ByIndex(parentIndex, svc.Namespace+"/"+svc.Name)
	type entry struct {
		route api.Route
		hr    *gatewayv1.HTTPRoute
		order int
	}
	var entries []entry
	for _, obj := range objs {
		hr, ok := httpRoute(obj)
		if !ok || !attachesTo(hr, svc, port) {
			continue
		}
		name := hr.Namespace + "/" + hr.Name
		for _, rule := range hr.Spec.Rules {
			backends := w.backends(hr.Namespace, rule.BackendRefs)
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.HTTPRouteMatch{{}}
			}
			for _, m := range matches {
				rm, ok := routeMatch(m)
				if !ok {
					continue // a match meshctl cannot honour must not widen into "everything"
				}
				entries = append(entries, entry{route: api.Route{Name: name, Match: rm, Backends: backends}, hr: hr, order: len(entries)})
			}
		}
	}
	// Gateway API precedence: exact paths, then the longest prefix, then a
	// method, then more header matches; ties go to the oldest route, then by
	// name, then in the route's own order.
	slices.SortStableFunc(entries, func(a, b entry) int {
		ma, mb := a.route.Match, b.route.Match
		return cmp.Or(
			cmp.Compare(boolInt(mb.PathType == "Exact"), boolInt(ma.PathType == "Exact")),
			cmp.Compare(len(mb.Path), len(ma.Path)),
			cmp.Compare(boolInt(mb.Method != ""), boolInt(ma.Method != "")),
			cmp.Compare(len(mb.Headers), len(ma.Headers)),
			a.hr.CreationTimestamp.Time.Compare(b.hr.CreationTimestamp.Time),
			strings.Compare(a.route.Name, b.route.Name),
			cmp.Compare(a.order, b.order),
		)
	})
	out := make([]api.Route, len(entries))
	for i, e := range entries {
		out[i] = e.route
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// attachesTo reports whether a route attaches to this Service port.
func attachesTo(r *gatewayv1.HTTPRoute, svc *corev1.Service, port corev1.ServicePort) bool {
	for _, p := range r.Spec.ParentRefs {
		if !isService(p.Group, p.Kind, "Gateway") || string(p.Name) != svc.Name {
			continue
		}
		if p.Namespace != nil && string(*p.Namespace) != r.Namespace {
			continue // see parentServices
		}
		if r.Namespace == svc.Namespace && (p.Port == nil || int32(*p.Port) == port.Port) {
			return true
		}
	}
	return false
}

// routeMatch translates a match; false for one meshctl does not support
// (regular expressions, query parameters).
func routeMatch(m gatewayv1.HTTPRouteMatch) (api.RouteMatch, bool) {
	var out api.RouteMatch
	if len(m.QueryParams) > 0 {
		return out, false
	}
	if m.Path != nil && m.Path.Value != nil {
		out.Path, out.PathType = *m.Path.Value, "PathPrefix"
		if m.Path.Type != nil {
			switch *m.Path.Type {
			case gatewayv1.PathMatchExact:
				out.PathType = "Exact"
			case gatewayv1.PathMatchPathPrefix:
			default:
				return out, false
			}
		}
		if out.PathType == "PathPrefix" && out.Path == "/" {
			out.Path, out.PathType = "", "" // every path
		}
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gatewayv1.HeaderMatchExact {
			return out, false
		}
		out.Headers = append(out.Headers, api.HeaderMatch{Name: string(h.Name), Value: h.Value})
	}
	if m.Method != nil {
		out.Method = string(*m.Method)
	}
	return out, true
}

// backends resolves a rule's backendRefs to Services and their endpoints.
func (w *Watcher) backends(routeNS string, refs []gatewayv1.HTTPBackendRef) []api.Backend {
	out := make([]api.Backend, 0, len(refs))
	for _, ref := range refs {
		// Backends in other namespaces would need a ReferenceGrant, which
		// meshctl does not read: they are left out.
		if !isService(ref.Group, ref.Kind, "Service") || ref.Port == nil || (ref.Namespace != nil && string(*ref.Namespace) != routeNS) {
			continue
		}
		ns := routeNS
		b := api.Backend{Service: string(ref.Name) + "." + ns + ":" + strconv.Itoa(int(*ref.Port)), Weight: 1, Endpoints: []api.Endpoint{}}
		if ref.Weight != nil {
			b.Weight = int(*ref.Weight)
		}
		if svc, err := w.serviceLister.Services(ns).Get(string(ref.Name)); err == nil {
			for _, sp := range svc.Spec.Ports {
				if sp.Port == int32(*ref.Port) {
					b.Endpoints = w.serviceDestination(svc, sp).Endpoints
				}
			}
		}
		out = append(out, b)
	}
	return out
}
