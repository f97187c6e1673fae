package destination

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/meshctl/meshctl/internal/api"
)

func route(name string, created time.Time, rules ...any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": name, "namespace": "shop", "creationTimestamp": created.UTC().Format(time.RFC3339)},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "web", "port": int64(80)}},
			"rules":      rules,
		},
	}}
}

func backendRef(name string, weight int64) map[string]any {
	return map[string]any{"name": name, "port": int64(80), "weight": weight}
}

func TestRoutesAttachToTheServiceInPrecedenceOrder(t *testing.T) {
	v2 := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-v2", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.52", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	v2slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-v2-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web-v2"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.20"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	w, client := newWatcher(t, svc, v2, v2slice)
	old := time.Now().Add(-time.Hour)
	split := route("split", old, map[string]any{"backendRefs": []any{backendRef("web-v1", 90), backendRef("web-v2", 10)}})
	canary := route("canary", time.Now(), map[string]any{
		"matches":     []any{map[string]any{"headers": []any{map[string]any{"name": "x-canary", "value": "1"}}}},
		"backendRefs": []any{backendRef("web-v2", 1)},
	})
	gvr := HTTPRoutes
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "HTTPRouteList"}, split, canary)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	if err := w.WithRoutes(factory.ForResource(gvr).Informer()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	updates := make(chan api.Destination, 10)
	go w.Watch(ctx, "web.shop:80", func(d api.Destination) error { updates <- d; return nil })
	d := <-updates
	if len(d.Routes) != 2 || d.Routes[0].Name != "shop/canary" || d.Routes[1].Name != "shop/split" {
		t.Fatalf("routes %+v: want the header match first, then the catch-all split", d.Routes)
	}
	b := d.Routes[1].Backends
	if len(b) != 2 || b[0].Service != "web-v1.shop:80" || b[0].Weight != 90 || len(b[0].Endpoints) != 0 ||
		b[1].Service != "web-v2.shop:80" || b[1].Weight != 10 || len(b[1].Endpoints) != 1 || b[1].Endpoints[0].Addr != "10.244.0.20:8080" {
		t.Errorf("split backends %+v: want web-v1 (missing: no endpoints) 90 and web-v2 10 with its endpoint", b)
	}
	if m := d.Routes[0].Match; len(m.Headers) != 1 || m.Headers[0] != (api.HeaderMatch{Name: "x-canary", Value: "1"}) {
		t.Errorf("canary match %+v", m)
	}
	// A backend's endpoints changing reaches the parent's stream.
	v2slice.Endpoints = append(v2slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.0.21"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Update(ctx, v2slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-updates:
		if got := len(d.Routes[0].Backends[0].Endpoints); got != 2 {
			t.Errorf("after web-v2 scaled: %d endpoints in the canary backend", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no update after a backend's endpoints changed")
	}
	// So does a route's weight change.
	split = route("split", old, map[string]any{"backendRefs": []any{backendRef("web-v1", 0), backendRef("web-v2", 100)}})
	if _, err := dyn.Resource(gvr).Namespace("shop").Update(ctx, split, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-updates:
		if b := d.Routes[1].Backends; b[0].Weight != 0 || b[1].Weight != 100 {
			t.Errorf("after the weight change: %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no update after the route changed")
	}
}
