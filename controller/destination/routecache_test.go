package destination

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestRouteCacheKeepsOnlyWhatRoutesForNeeds: a cached entry holds no
// typed route, no metadata beyond name, namespace and creation time (no
// managedFields, labels or annotations), and no closure (one that
// translates holds the whole route): nothing that reaches one of those
// types, or a func or an interface that could hold anything.
func TestRouteCacheKeepsOnlyWhatRoutesForNeeds(t *testing.T) {
	forbidden := map[reflect.Type]bool{
		reflect.TypeFor[metav1.ObjectMeta]():         true,
		reflect.TypeFor[metav1.ManagedFieldsEntry](): true,
		reflect.TypeFor[gatewayv1.HTTPRoute]():       true,
		reflect.TypeFor[gatewayv1.GRPCRoute]():       true,
		reflect.TypeFor[gatewayv1.HTTPRouteSpec]():   true,
		reflect.TypeFor[gatewayv1.GRPCRouteSpec]():   true,
	}
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		if forbidden[typ] {
			t.Errorf("a cached route holds %s (%s)", typ, path)
			return
		}
		switch typ.Kind() {
		case reflect.Func, reflect.Interface:
			t.Errorf("a cached route holds a %s (%s): it may hold the whole route", typ.Kind(), path)
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(path+"[]", typ.Elem())
		case reflect.Map:
			walk(path+"[key]", typ.Key())
			walk(path+"[]", typ.Elem())
		case reflect.Struct:
			if typ == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range typ.NumField() {
				walk(path+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
	walk("translatedRoute", reflect.TypeFor[translatedRoute]())
}

// TestRouteCacheEntryKeepsTheRoutesFacts: what the cache keeps of a route
// is what routesFor uses: its name, namespace, creation time, parents and
// kind, and its translation.
func TestRouteCacheEntryKeepsTheRoutesFacts(t *testing.T) {
	u := unstructuredYAML(t, `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute,
  metadata: {name: rpc, namespace: mesh, uid: u1, resourceVersion: "7", creationTimestamp: "2026-01-02T03:04:05Z",
    labels: {a: b}, managedFields: [{manager: kubectl, operation: Apply, apiVersion: gateway.networking.k8s.io/v1}]},
  spec: {parentRefs: [{group: "", kind: Service, name: echo, port: 80}], rules: [{backendRefs: [{name: echo, port: 80}]}]}}`)
	c := newRouteCache()
	c.track(u)
	if _, _, ok := c.get(u); !ok {
		t.Fatal("not read")
	}
	e := c.byUID["u1"]
	r := e.route
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if !e.filled || r.name != "rpc" || r.namespace != "mesh" || !r.created.Equal(created) || r.kind != KindGRPCRoute ||
		len(r.parents) != 1 || r.parents[0].Name != "echo" || len(e.translation.Routes) != 1 || e.translation.Routes[0].Name != "mesh/rpc" {
		t.Errorf("cached %+v", e)
	}
	// The next read of the same resourceVersion is the cache's.
	before := c.translations.Load()
	if r2, _, ok := c.get(u); !ok || !reflect.DeepEqual(r2, r) || c.translations.Load() != before {
		t.Errorf("second read: %+v, %d translations", r2, c.translations.Load()-before)
	}
}
