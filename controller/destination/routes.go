package destination

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/gamma"
)

// HTTPRoutes is the resource of the HTTPRoutes the watcher follows.
var HTTPRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// parentIndex indexes routes by the Services ("ns/name") they attach to,
// and by Service and group (groupKey): a Service's producer routes, or one
// namespace's consumer routes of it.
const parentIndex = "parentService"

// groupKey is the index key of the routes of namespace routeNS attached to
// the Service svc ("ns/name"): its producer routes when routeNS is the
// Service's namespace, that namespace's consumer routes otherwise.
func groupKey(svc, routeNS string) string { return svc + "@" + routeNS }

// AllConsumers asks for the consumer routes of every namespace (Resolve
// and Watch: tests and local tools, never a proxy's stream).
const AllConsumers = ""

// producerOnly asks for the producer routes alone: the client of a
// destination stream whose namespace is unknown gets no namespace's
// consumer routes. No namespace has this name ("/" cannot appear in one),
// so it matches no consumer group.
const producerOnly = "/"

// meshRoute is what the watcher keeps of an HTTPRoute or a GRPCRoute read
// from an informer: what routesFor needs besides its Translation, and
// nothing else (the route cache holds one per route: no managedFields,
// no spec).
type meshRoute struct {
	name, namespace string
	created         time.Time
	parents         []gatewayv1.ParentReference
	kind            string
}

// readRoute reads an informer's HTTPRoute or GRPCRoute, and returns with
// it translate, which reads its spec (TranslateHTTPRoute,
// TranslateGRPCRoute): call it, then let it go, for the typed route it
// holds to go too.
func readRoute(obj any) (r meshRoute, translate func() Translation, ok bool) {
	u, ok := tombstone(obj).(*unstructured.Unstructured)
	if !ok {
		return meshRoute{}, nil, false
	}
	switch u.GetKind() {
	case KindGRPCRoute:
		gr, ok := grpcRoute(u)
		if !ok {
			return meshRoute{}, nil, false
		}
		return routeOf(gr.ObjectMeta, gr.Spec.ParentRefs, KindGRPCRoute), func() Translation { return TranslateGRPCRoute(gr) }, true
	default:
		hr, ok := httpRoute(u)
		if !ok {
			return meshRoute{}, nil, false
		}
		return routeOf(hr.ObjectMeta, hr.Spec.ParentRefs, KindHTTPRoute), func() Translation { return TranslateHTTPRoute(hr) }, true
	}
}

// routeOf keeps what a meshRoute needs of a route's metadata and spec.
func routeOf(meta metav1.ObjectMeta, parents []gatewayv1.ParentReference, kind string) meshRoute {
	return meshRoute{name: meta.Name, namespace: meta.Namespace, created: meta.CreationTimestamp.Time, parents: parents, kind: kind}
}

// WithRoutes makes the watcher follow HTTPRoutes from inf (unstructured
// objects of HTTPRoutes): those whose parentRefs name a Service shape the
// Service's traffic (GAMMA). Call it before the informer starts.
func (w *Watcher) WithRoutes(inf cache.SharedIndexInformer) error {
	if err := w.follow(inf); err != nil {
		return err
	}
	w.routes = inf
	return nil
}

// WithGRPCRoutes makes the watcher follow GRPCRoutes from inf (unstructured
// objects). Where a GRPCRoute and an HTTPRoute attach to the same Service
// port, the GRPCRoute's routes are the port's (GEP-1294). Call it before
// the informer starts.
func (w *Watcher) WithGRPCRoutes(inf cache.SharedIndexInformer) error {
	if err := w.follow(inf); err != nil {
		return err
	}
	w.grpcRoutes = inf
	return nil
}

// follow indexes a route informer by parent Service and wakes the
// streams of those Services on every change.
func (w *Watcher) follow(inf cache.SharedIndexInformer) error {
	if err := inf.AddIndexers(cache.Indexers{parentIndex: func(obj any) ([]string, error) {
		r, _, ok := readRoute(obj)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, svc := range parentServices(r.namespace, r.parents) {
			keys = append(keys, svc, groupKey(svc, r.namespace))
		}
		return keys, nil
	}}); err != nil {
		return fmt.Errorf("index routes by parent: %w", err)
	}
	notify := func(obj any) {
		if r, _, ok := readRoute(obj); ok {
			for _, key := range parentServices(r.namespace, r.parents) {
				w.notify(key)
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.translated.track(obj); notify(obj) },
		DeleteFunc: func(obj any) { w.translated.forget(obj); notify(obj) },
		UpdateFunc: func(o, n any) { w.translated.track(n); notify(o); notify(n) },
	}); err != nil {
		return fmt.Errorf("follow routes: %w", err)
	}
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

// parentServices are the "ns/name" keys of the Services a route attaches
// to. A route in another namespace than the Service's is a consumer route:
// it shapes only the requests of its own namespace's clients.
func parentServices(routeNS string, parents []gatewayv1.ParentReference) []string {
	var out []string
	for _, p := range parents {
		if gamma.IsServiceParent(p) {
			out = append(out, gamma.ParentNamespace(routeNS, p)+"/"+string(p.Name))
		}
	}
	return out
}

// ParentMatchesPort reports whether a Service parentRef (already known to
// name svc) covers a port: its port is the Service port's number, its
// sectionName the port's name; with neither, every port.
func ParentMatchesPort(p gatewayv1.ParentReference, port corev1.ServicePort) bool {
	if p.Port != nil && int32(*p.Port) != port.Port {
		return false
	}
	if p.SectionName != nil && string(*p.SectionName) != port.Name {
		return false
	}
	return true
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
// match first, for a client of namespace client: the producer routes and
// that namespace's consumer routes (AllConsumers: every namespace's;
// producerOnly: none). Within each group (the producer
// routes, each namespace's consumer routes) GRPCRoutes attached to the port
// take it over from HTTPRoutes; a group never changes another's.
func (w *Watcher) routesFor(svc *corev1.Service, port corev1.ServicePort, client string) []api.Route {
	key := svc.Namespace + "/" + svc.Name
	indexKeys := []string{key}
	if client != AllConsumers {
		// Only the producer group and the client's own: a namespace's
		// consumer routes, however many, cost nothing to other clients.
		indexKeys = []string{groupKey(key, svc.Namespace)}
		if client != svc.Namespace && client != producerOnly {
			indexKeys = append(indexKeys, groupKey(key, client))
		}
	}
	type group struct{ grpc, http []routeEntry }
	groups := map[string]*group{} // by Route.Consumer
	for _, inf := range []cache.SharedIndexInformer{w.grpcRoutes, w.routes} {
		if inf == nil {
			continue
		}
		var objs []any
		for _, k := range indexKeys {
			o, _ := inf.GetIndexer().ByIndex(parentIndex, k)
			objs = append(objs, o...)
		}
		for _, obj := range objs {
			r, t, ok := w.translated.get(obj)
			if !ok || !attachesTo(r, svc, port) {
				continue
			}
			if t.Unsupported != "" {
				continue // never in part, never widened: see the route's status
			}
			for i, route := range t.Routes {
				if r.namespace != svc.Namespace {
					route.Consumer = r.namespace
				}
				e := routeEntry{route: route, created: r.created, order: i}
				g := groups[route.Consumer]
				if g == nil {
					g = &group{}
					groups[route.Consumer] = g
				}
				if r.kind == KindGRPCRoute {
					g.grpc = append(g.grpc, e)
				} else {
					g.http = append(g.http, e)
				}
			}
		}
	}
	var entries []routeEntry
	for _, g := range groups {
		if len(g.grpc) > 0 {
			entries = append(entries, g.grpc...)
		} else {
			entries = append(entries, g.http...)
		}
	}
	sortRoutes(entries)
	var out []api.Route
	for _, e := range entries {
		out = append(out, w.withEndpoints(e.route))
	}
	return out
}

// routeEntry is a route with what its precedence needs.
type routeEntry struct {
	route   api.Route
	created time.Time
	order   int // in the route's spec
}

// sortRoutes orders routes by Gateway API precedence: an exact path, then
// the longest prefix, then a method, then more header matches, then more
// query parameter matches; ties go to the oldest route, then by
// namespace/name, then in the route's own order.
func sortRoutes(entries []routeEntry) {
	slices.SortStableFunc(entries, func(a, b routeEntry) int {
		ma, mb := a.route.Match, b.route.Match
		return cmp.Or(
			cmp.Compare(boolInt(mb.PathType == "Exact"), boolInt(ma.PathType == "Exact")),
			cmp.Compare(len(precedencePath(mb)), len(precedencePath(ma))),
			cmp.Compare(boolInt(mb.Method != ""), boolInt(ma.Method != "")),
			cmp.Compare(len(mb.Headers), len(ma.Headers)),
			cmp.Compare(len(mb.QueryParams), len(ma.QueryParams)),
			a.created.Compare(b.created),
			strings.Compare(a.route.Name, b.route.Name),
			cmp.Compare(a.order, b.order),
		)
	})
}

// precedencePath is the path a match's precedence counts: a prefix
// without its trailing "/" ("/foo/" and "/foo" match the same paths, and
// "/" every path, like no path match at all).
func precedencePath(m api.RouteMatch) string {
	if m.PathType == "PathPrefix" {
		return strings.TrimRight(m.Path, "/")
	}
	return m.Path
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// attachesTo reports whether a route attaches to this Service port.
func attachesTo(r meshRoute, svc *corev1.Service, port corev1.ServicePort) bool {
	for _, p := range r.parents {
		if gamma.IsServiceParent(p) && string(p.Name) == svc.Name && gamma.ParentNamespace(r.namespace, p) == svc.Namespace && ParentMatchesPort(p, port) {
			return true
		}
	}
	return false
}

// withEndpoints fills in the endpoints of a route's backends and mirrors.
func (w *Watcher) withEndpoints(r api.Route) api.Route {
	backends := make([]api.Backend, len(r.Backends))
	for i, b := range r.Backends {
		backends[i] = w.backendEndpoints(b)
	}
	r.Backends = backends
	if len(r.Mirrors) > 0 {
		mirrors := make([]api.Mirror, len(r.Mirrors))
		for i, m := range r.Mirrors {
			m.Backend = w.backendEndpoints(m.Backend)
			mirrors[i] = m
		}
		r.Mirrors = mirrors
	}
	return r
}

// backendEndpoints resolves a backend's Service ("name.ns:port") to its
// ready endpoints; a missing Service or port has none.
func (w *Watcher) backendEndpoints(b api.Backend) api.Backend {
	b.Endpoints = []api.Endpoint{}
	b.Invalid = true
	if b.Service == "" {
		return b
	}
	hostPort, portStr, _ := strings.Cut(b.Service, ":")
	name, ns, _ := strings.Cut(hostPort, ".")
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return b
	}
	svc, err := w.serviceLister.Services(ns).Get(name)
	if err != nil {
		return b
	}
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) == port {
			b.Endpoints = w.serviceDestination(svc, sp).Endpoints
			b.Invalid = false
		}
	}
	return b
}
