package routestatus

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/controller/destination"
)

const missingBackendRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: mesh, generation: 4}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}, {name: echo-v3, port: 80}]}]
status:
  parents:
  - parentRef: {name: gw}
    controllerName: example.org/gateway
    conditions: [{type: Accepted, status: "True", reason: Accepted, message: theirs, lastTransitionTime: "2026-01-01T00:00:00Z"}]
`

func statusUpdates(dyn *dynamicfake.FakeDynamicClient) int {
	n := 0
	for _, a := range dyn.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// TestWriterWritesOnceAndOnlyOnChange runs the writer against fake API
// servers: it writes the route's status through the status subresource,
// keeps the other controller's entry, and does not write again when its
// own update comes back through the informer (no hot loop); a new Service
// (the missing backend) makes it write again.
func TestWriterWritesOnceAndOnlyOnChange(t *testing.T) {
	u := &unstructured.Unstructured{}
	js, err := yaml.YAMLToJSON([]byte(missingBackendRoute))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.UnmarshalJSON(js); err != nil { // integers as int64, as from the API server
		t.Fatal(err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{destination.HTTPRoutes: "HTTPRouteList"}, u)
	// The fake keeps resourceVersions as given; the API server bumps them.
	u.SetResourceVersion("1")
	version := 1
	dyn.PrependReactor("update", "httproutes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		version++
		a.(k8stesting.UpdateAction).GetObject().(*unstructured.Unstructured).SetResourceVersion(strconv.Itoa(version))
		return false, nil, nil
	})
	client := fake.NewClientset(services["mesh/echo"], services["mesh/echo-v2"])
	kube := informers.NewSharedInformerFactory(client, 0)
	custom := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	routes := custom.ForResource(destination.HTTPRoutes).Informer()
	w, err := New(Config{Client: dyn, HTTPRoutes: routes, Services: kube.Core().V1().Services().Informer(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kube.Start(ctx.Done())
	custom.Start(ctx.Done())
	kube.WaitForCacheSync(ctx.Done())
	custom.WaitForCacheSync(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	read := func() []gatewayv1.RouteParentStatus {
		got, err := dyn.Resource(destination.HTTPRoutes).Namespace("mesh").Get(ctx, "split", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var hr gatewayv1.HTTPRoute
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &hr); err != nil {
			t.Fatal(err)
		}
		return hr.Status.Parents
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; actions %v", what, dyn.Actions())
			}
		}
	}
	waitFor("the first status update", func() bool { return statusUpdates(dyn) >= 1 })
	parents := read()
	if len(parents) != 2 || parents[0].ControllerName != "example.org/gateway" || parents[0].Conditions[0].Message != "theirs" {
		t.Fatalf("parents %+v: the other controller's entry must stay as it was", parents)
	}
	if c := conds(parents[1]); c != "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound" || parents[1].Conditions[1].ObservedGeneration != 4 {
		t.Errorf("our entry %+v", parents[1])
	}
	// The update comes back as an informer event: no second write.
	time.Sleep(300 * time.Millisecond)
	if n := statusUpdates(dyn); n != 1 {
		t.Errorf("%d status updates for one change: a write loop", n)
	}
	// The missing backend appears: ResolvedRefs turns True.
	v3 := services["mesh/echo-v2"].DeepCopy()
	v3.Name = "echo-v3"
	if _, err := client.CoreV1().Services("mesh").Create(ctx, v3, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the update after the backend appeared", func() bool { return statusUpdates(dyn) >= 2 })
	if c := conds(read()[1]); c != "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs" {
		t.Errorf("after echo-v3 appeared: %s", c)
	}
}
