package destination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/api"
)

// unstructuredYAML reads a manifest.
func unstructuredYAML(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// routesWatcher is a watcher following HTTPRoutes and GRPCRoutes made of
// manifests.
func routesWatcher(t *testing.T, services []*corev1.Service, manifests ...string) *Watcher {
	t.Helper()
	objs := make([]any, len(services))
	for i, s := range services {
		objs[i] = s
	}
	w, _ := newWatcher(t, objs...)
	var routes []runtime.Object
	for _, m := range manifests {
		routes = append(routes, unstructuredYAML(t, m))
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{HTTPRoutes: "HTTPRouteList", GRPCRoutes: "GRPCRouteList"}, routes...)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	if err := w.WithRoutes(factory.ForResource(HTTPRoutes).Informer()); err != nil {
		t.Fatal(err)
	}
	if err := w.WithGRPCRoutes(factory.ForResource(GRPCRoutes).Informer()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return w
}

func routeNames(rs []api.Route) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
		if r.Consumer != "" {
			out[i] += "@" + r.Consumer
		}
	}
	return out
}

func resolveRoutes(t *testing.T, w *Watcher, target string) []string {
	t.Helper()
	d, err := w.Resolve(target)
	if err != nil {
		t.Fatal(err)
	}
	return routeNames(d.Routes)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var echo = &corev1.Service{
	ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "mesh"},
	Spec: corev1.ServiceSpec{ClusterIP: "10.96.1.10", ClusterIPs: []string{"10.96.1.10"}, Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "grpc", Port: 7070, Protocol: corev1.ProtocolTCP}}},
}

const (
	onPort80 = `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: port80, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 80}], rules: [{backendRefs: [{name: echo, port: 80}]}]}}`
	onSectionGRPC = `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: section, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, sectionName: grpc}], rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: echo, port: 7070}]}]}}`
	onEveryPort = `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: every, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo}], rules: [{matches: [{path: {value: /every}}], backendRefs: [{name: echo, port: 80}]}]}}`
	consumer = `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: mine, namespace: client},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, namespace: mesh, port: 80}], rules: [{backendRefs: [{name: echo, namespace: mesh, port: 80}]}]}}`
	unsupportedRoute = `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: regex, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo}], rules: [{matches: [{path: {type: RegularExpression, value: /x.*}}], backendRefs: [{name: echo, port: 80}]}]}}`
	grpcOn7070 = `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute, metadata: {name: grpc, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 7070}], rules: [{backendRefs: [{name: echo, port: 7070}]}]}}`
)

// TestRoutesAttachByPortSectionNameAndNamespace checks which routes reach
// which Service port: a parentRef's port and sectionName narrow it, a
// route of another namespace is a consumer route of that namespace, an
// unsupported route reaches none, a GRPCRoute takes the port over from
// HTTPRoutes, and pod-IP targets get no routes.
func TestRoutesAttachByPortSectionNameAndNamespace(t *testing.T) {
	pod := pod("echo-a", "10.244.1.5", "echo", true)
	pod.Namespace = "mesh"
	w := routesWatcher(t, []*corev1.Service{echo}, onPort80, onSectionGRPC, onEveryPort, consumer, unsupportedRoute)
	if err := w.pods.GetIndexer().Add(pod); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		// /every is the longest prefix; the catch-alls tie on everything
		// but namespace/name.
		{"echo.mesh:80", []string{"mesh/every", "client/mine@client", "mesh/port80"}},
		{"10.96.1.10:80", []string{"mesh/every", "client/mine@client", "mesh/port80"}},
		{"echo.mesh:7070", []string{"mesh/every", "mesh/section"}},
		{"10.244.1.5:80", []string{}},
	} {
		if got := resolveRoutes(t, w, tc.target); !sameStrings(got, tc.want) {
			t.Errorf("%s: routes %v, want %v", tc.target, got, tc.want)
		}
	}

	w = routesWatcher(t, []*corev1.Service{echo}, onPort80, onSectionGRPC, onEveryPort, grpcOn7070)
	if got, want := resolveRoutes(t, w, "echo.mesh:7070"), []string{"mesh/grpc"}; !sameStrings(got, want) {
		t.Errorf("with a GRPCRoute on 7070: routes %v, want only the GRPCRoute's %v", got, want)
	}
	if got, want := resolveRoutes(t, w, "echo.mesh:80"), []string{"mesh/every", "mesh/port80"}; !sameStrings(got, want) {
		t.Errorf("with a GRPCRoute on 7070: port 80 routes %v, want the HTTPRoutes %v", got, want)
	}

	// Another namespace's GRPCRoute on port 80 is a consumer route of that
	// namespace: it takes the port over from that namespace's HTTPRoutes
	// only, never from the producer's (which every other client follows).
	attackerGRPC := `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute, metadata: {name: evil, namespace: attacker},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, namespace: mesh, port: 80}], rules: [{backendRefs: [{name: echo, namespace: mesh, port: 80}]}]}}`
	attackerHTTP := strings.ReplaceAll(consumer, "client", "attacker")
	w = routesWatcher(t, []*corev1.Service{echo}, onPort80, onEveryPort, attackerGRPC, attackerHTTP)
	if got, want := resolveRoutes(t, w, "echo.mesh:80"), []string{"mesh/every", "attacker/evil@attacker", "mesh/port80"}; !sameStrings(got, want) {
		t.Errorf("with another namespace's GRPCRoute on port 80: routes %v, want the producer's HTTPRoutes and that namespace's GRPCRoute only %v", got, want)
	}
}

// TestRoutePrecedenceCountsQueryParams: with equal paths, methods and
// headers, the match with more query parameters comes first.
func TestRoutePrecedenceCountsQueryParams(t *testing.T) {
	entries := []routeEntry{
		{route: api.Route{Name: "a/one", Match: api.RouteMatch{Path: "/p", PathType: "PathPrefix"}}},
		{route: api.Route{Name: "a/two", Match: api.RouteMatch{Path: "/p", PathType: "PathPrefix", QueryParams: []api.HeaderMatch{{Name: "q", Value: "1"}}}}},
		{route: api.Route{Name: "a/three", Match: api.RouteMatch{Path: "/p", PathType: "PathPrefix", Method: "GET"}}},
		{route: api.Route{Name: "a/four", Match: api.RouteMatch{Path: "/p", PathType: "Exact"}}},
		{route: api.Route{Name: "a/five", Match: api.RouteMatch{Path: "/p", PathType: "PathPrefix", Headers: []api.HeaderMatch{{Name: "h", Value: "1"}}}}},
	}
	sortRoutes(entries)
	var got []string
	for _, e := range entries {
		got = append(got, e.route.Name)
	}
	if want := []string{"a/four", "a/three", "a/five", "a/two", "a/one"}; !sameStrings(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// TestStreamKeepsOnlyTheClientsConsumerRoutes: a client whose certificate
// says namespace "client" gets the producer route and its own consumer
// route, one of namespace "other" the producer route and its own; a
// client with no certificate (no SPIFFE ID: its namespace is unknown) gets
// the producer route only, no namespace's consumer routes (fail closed).
func TestStreamKeepsOnlyTheClientsConsumerRoutes(t *testing.T) {
	other := strings.ReplaceAll(consumer, "client", "other")
	w := routesWatcher(t, []*corev1.Service{echo}, onPort80, consumer, other)
	for ns, want := range map[string][]string{
		"client": {"client/mine@client", "mesh/port80"},
		"other":  {"mesh/port80", "other/mine@other"},
		"":       {"mesh/port80"}, // no certificate: the producer routes only
	} {
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/destinations?target=echo.mesh:80", nil)
		if ns != "" {
			u, _ := url.Parse("spiffe://cluster.local/ns/" + ns + "/sa/default")
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
		}
		pr, pw := io.Pipe()
		rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder(), w: pw}
		go func() { w.ServeHTTP(rec, req); pw.Close() }()
		var d api.Destination
		if err := json.NewDecoder(pr).Decode(&d); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, _ = io.Copy(io.Discard, pr)
		if got := routeNames(d.Routes); !sameStrings(got, want) {
			t.Errorf("client of %q: routes %v, want %v", ns, got, want)
		}
	}
}

// streamRecorder passes a streamed body on as it is written.
type streamRecorder struct {
	*httptest.ResponseRecorder
	w io.Writer
}

func (s *streamRecorder) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s *streamRecorder) Flush()                      {}

// TestBackendsNamingNoServicePortAreInvalid: a backend whose Service or
// port does not exist, or that is no Service, is marked invalid (its share
// gets 500 at the proxy); one that exists is not, even with no endpoints.
func TestBackendsNamingNoServicePortAreInvalid(t *testing.T) {
	route := `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: mixed, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 80}], rules: [{backendRefs: [
    {name: echo, port: 80}, {name: gone, port: 80}, {name: echo, port: 81}, {group: example.org, kind: Bucket, name: b, port: 80}]}]}}`
	w := routesWatcher(t, []*corev1.Service{echo}, route)
	d, err := w.Resolve("echo.mesh:80")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 1 || len(d.Routes[0].Backends) != 4 {
		t.Fatalf("routes %+v, want one with 4 backends", d.Routes)
	}
	for i, want := range []bool{false, true, true, true} {
		if b := d.Routes[0].Backends[i]; b.Invalid != want {
			t.Errorf("backend %d (%q): invalid %v, want %v", i, b.Service, b.Invalid, want)
		}
	}
}

// TestPrecedenceTiesIgnoreATrailingSlash: "/foo/" and "/foo" match the same
// paths and "/" every path, so neither wins by its length: the older route
// does.
func TestPrecedenceTiesIgnoreATrailingSlash(t *testing.T) {
	old, young := time.Unix(100, 0), time.Unix(200, 0)
	prefix := func(p string) api.RouteMatch { return api.RouteMatch{Path: p, PathType: "PathPrefix"} }
	for _, tc := range []struct{ youngPath, oldPath string }{{"/foo/", "/foo"}, {"/", ""}} {
		entries := []routeEntry{
			{route: api.Route{Name: "a/young", Match: prefix(tc.youngPath)}, created: young},
			{route: api.Route{Name: "b/old", Match: prefix(tc.oldPath)}, created: old},
		}
		if tc.oldPath == "" {
			entries[1].route.Match = api.RouteMatch{}
		}
		sortRoutes(entries)
		if entries[0].route.Name != "b/old" {
			t.Errorf("%q (younger) against %q (older): %s first, want the older route", tc.youngPath, tc.oldPath, entries[0].route.Name)
		}
	}
}

// TestGRPCRoutesThatApplyNowhereTakeNoPort: a GRPCRoute with no rules (no
// routes) and an unsupported one (applied nowhere) take no port over from
// the HTTPRoutes of their group: the HTTPRoute on the port is applied, as
// routestatus says (Accepted, not Conflicted).
func TestGRPCRoutesThatApplyNowhereTakeNoPort(t *testing.T) {
	empty := `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute, metadata: {name: empty, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 80}], rules: []}}`
	regex := `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute, metadata: {name: regex, namespace: mesh},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 80}], rules: [{matches: [{method: {type: RegularExpression, service: "a.*"}}], backendRefs: [{name: echo, port: 80}]}]}}`
	for name, grpc := range map[string]string{"no rules": empty, "unsupported": regex} {
		w := routesWatcher(t, []*corev1.Service{echo}, onPort80, grpc)
		if got, want := resolveRoutes(t, w, "echo.mesh:80"), []string{"mesh/port80"}; !sameStrings(got, want) {
			t.Errorf("with a GRPCRoute of %s on port 80: routes %v, want the HTTPRoute's %v", name, got, want)
		}
	}
}
