package destination

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// consumerRoute is an HTTPRoute of namespace ns attached to echo.mesh:80.
func consumerRoute(ns, name, rv string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "echo", "namespace": "mesh", "port": int64(80)}},
			"rules": []any{map[string]any{
				"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/" + name}}},
				"backendRefs": []any{map[string]any{"name": "echo", "namespace": "mesh", "port": int64(80)}},
			}},
		},
	}}
	u.SetUID(types.UID(ns + "/" + name))
	u.SetResourceVersion(rv)
	u.SetCreationTimestamp(metav1.NewTime(time.Unix(1_700_000_000, 0)))
	return u
}

// TestManyConsumerRoutesCostOnlyTheirNamespace attaches 100,000 consumer
// routes from 1,000 namespaces to one Service. A client gets the producer
// route and its own namespace's 100 routes, and only those are read and
// translated; a second resolve translates nothing; a changed route is
// translated again, alone; a deleted route leaves the cache.
func TestManyConsumerRoutesCostOnlyTheirNamespace(t *testing.T) {
	const namespaces, perNamespace = 1000, 100
	if testing.Short() {
		t.Skip("100,000 routes: not in -short")
	}
	w, _ := newWatcher(t, echo)
	producer := unstructuredYAML(t, onPort80)
	producer.SetUID("mesh/port80")
	producer.SetResourceVersion("1")
	objs := []runtime.Object{producer}
	for n := range namespaces {
		for i := range perNamespace {
			objs = append(objs, consumerRoute(fmt.Sprintf("client-%d", n), fmt.Sprintf("r%d", i), "1"))
		}
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{HTTPRoutes: "HTTPRouteList"}, objs...)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	if err := w.WithRoutes(factory.ForResource(HTTPRoutes).Informer()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	start := time.Now()
	factory.WaitForCacheSync(ctx.Done())
	waitFor(t, fmt.Sprintf("every route tracked (%d)", len(objs)), func() bool { return w.translated.len() == len(objs) })

	t.Logf("%d routes synced and tracked in %v", len(objs), time.Since(start).Round(time.Millisecond))
	before := w.translated.translations.Load()
	start = time.Now()
	d, err := w.ResolveFor("echo.mesh:80", "client-7")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != perNamespace+1 {
		t.Fatalf("client-7 got %d routes, want %d (its own and the producer's)", len(d.Routes), perNamespace+1)
	}
	for _, r := range d.Routes {
		if r.Consumer != "" && r.Consumer != "client-7" {
			t.Fatalf("client-7 got namespace %s's consumer route %s", r.Consumer, r.Name)
		}
	}
	t.Logf("first resolve for client-7: %v", time.Since(start).Round(time.Microsecond))
	if got := w.translated.translations.Load() - before; got != perNamespace+1 {
		t.Errorf("the first resolve translated %d routes, want %d", got, perNamespace+1)
	}
	before = w.translated.translations.Load()
	start = time.Now()
	for range 10 {
		if _, err := w.ResolveFor("echo.mesh:80", "client-7"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ten more resolves: %v", time.Since(start).Round(time.Microsecond))
	if got := w.translated.translations.Load() - before; got != 0 {
		t.Errorf("ten more resolves translated %d routes, want 0 (cached)", got)
	}
	if d, _ := w.ResolveFor("echo.mesh:80", "mesh"); len(d.Routes) != 1 || d.Routes[0].Name != "mesh/port80" {
		t.Errorf("a client of the producer namespace got %v, want the producer route alone", routeNames(d.Routes))
	}

	// A changed route is translated again, and only it.
	changed := consumerRoute("client-7", "r3", "2")
	changed.Object["spec"].(map[string]any)["rules"].([]any)[0].(map[string]any)["matches"] = []any{
		map[string]any{"path": map[string]any{"type": "Exact", "value": "/changed"}}}
	if _, err := dyn.Resource(HTTPRoutes).Namespace("client-7").Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change reaches the resolve", func() bool {
		d, _ := w.ResolveFor("echo.mesh:80", "client-7")
		return len(d.Routes) > 0 && d.Routes[0].Match.Path == "/changed"
	})
	before = w.translated.translations.Load()
	if _, err := w.ResolveFor("echo.mesh:80", "client-7"); err != nil {
		t.Fatal(err)
	}
	if got := w.translated.translations.Load() - before; got != 0 {
		t.Errorf("a resolve after the change translated %d routes, want 0", got)
	}

	// A deleted route leaves the cache.
	if err := dyn.Resource(HTTPRoutes).Namespace("client-9").Delete(ctx, "r0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted route leaves the cache", func() bool { return w.translated.len() == len(objs)-1 })
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// 100,001 routes under -race, with the other packages' tests on the
	// same 2 cores: CI once needed more than 30 s to track them all.
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
