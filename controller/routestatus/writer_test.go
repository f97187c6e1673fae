package routestatus

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
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
	"github.com/meshctl/meshctl/internal/gamma"
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

// fakeCluster is a Writer on fake API servers holding routes (YAML).
type fakeCluster struct {
	t       *testing.T
	dyn     *dynamicfake.FakeDynamicClient
	kube    *fake.Clientset
	w       *Writer
	version atomic.Int64
}

func routeObject(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil { // integers as int64, as from the API server
		t.Fatal(err)
	}
	return u
}

// newFakeCluster builds the Writer on fake API servers holding svcs and
// routes, and starts its informers (not the Writer) until ctx ends. The
// status updates of the routes named in quiet succeed but are not stored:
// no event of them comes back to wake the route again.
func newFakeCluster(ctx context.Context, t *testing.T, workers int, svcs []runtime.Object, quiet []string, routes ...string) *fakeCluster {
	t.Helper()
	var objs []runtime.Object
	for _, y := range routes {
		u := routeObject(t, y)
		u.SetResourceVersion("1")
		objs = append(objs, u)
	}
	c := &fakeCluster{t: t, kube: fake.NewClientset(svcs...)}
	c.version.Store(1)
	c.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{destination.HTTPRoutes: "HTTPRouteList", destination.GRPCRoutes: "GRPCRouteList"}, objs...)
	for _, resource := range []string{"httproutes", "grpcroutes"} {
		// The fake keeps resourceVersions as given; the API server bumps them.
		c.dyn.PrependReactor("update", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
			u := a.(k8stesting.UpdateAction).GetObject().(*unstructured.Unstructured)
			if a.GetSubresource() == "status" && slices.Contains(quiet, u.GetName()) {
				return true, u, nil
			}
			u.SetResourceVersion(strconv.FormatInt(c.version.Add(1), 10))
			return false, nil, nil
		})
	}
	kube := informers.NewSharedInformerFactory(c.kube, 0)
	custom := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	var err error
	c.w, err = New(Config{Client: c.dyn, HTTPRoutes: custom.ForResource(destination.HTTPRoutes).Informer(),
		GRPCRoutes: custom.ForResource(destination.GRPCRoutes).Informer(), Services: kube.Core().V1().Services().Informer(),
		Workers: workers, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	kube.Start(ctx.Done())
	custom.Start(ctx.Done())
	kube.WaitForCacheSync(ctx.Done())
	custom.WaitForCacheSync(ctx.Done())
	return c
}

// updates counts the status updates of the route name (of any kind).
func (c *fakeCluster) updates(name string) int {
	n := 0
	for _, a := range c.dyn.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "status" && u.GetObject().(*unstructured.Unstructured).GetName() == name {
			n++
		}
	}
	return n
}

// accepted is "Status/Reason" of the Accepted condition of our first entry
// of a route's status; "" when there is none.
func (c *fakeCluster) accepted(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) string {
	u, err := c.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	var st struct {
		Status gatewayv1.RouteStatus `json:"status"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &st); err != nil {
		c.t.Fatal(err)
	}
	for _, p := range st.Status.Parents {
		if p.ControllerName == gamma.ControllerName && len(p.Conditions) > 0 {
			return string(p.Conditions[0].Status) + "/" + p.Conditions[0].Reason
		}
	}
	return ""
}

func (c *fakeCluster) waitFor(what string, ok func() bool) {
	c.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s; actions %v", what, c.dyn.Actions())
		}
	}
}

const (
	targetRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: target, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{backendRefs: [{name: new, port: 80}]}]
`
	sentinelRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sentinel, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: barrier}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}]}]
`
	bystanderRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bystander, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v2, port: 80}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
`
)

// TestWriterServiceWakesOnlyItsRoutes: a new Service re-evaluates the
// routes that name it (as a backend, or as a parent), not the others. The
// test drives the queue itself, one route at a time, and counts the times
// each route is looked at and written.
func TestWriterServiceWakesOnlyItsRoutes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// No Service at first: no Service event but those of the test; no
	// event of its own status update wakes the bystander.
	c := newFakeCluster(ctx, t, 1, nil, []string{"bystander"}, targetRoute, sentinelRoute, bystanderRoute)
	looked := map[string]int{}
	// drain looks at the queued routes until done holds and nothing is
	// queued.
	drain := func(what string, done func() bool) {
		t.Helper()
		c.waitFor(what, func() bool {
			for c.w.queue.Len() > 0 {
				k, _ := c.w.queue.Get()
				looked[k.name]++
				if err := c.w.sync(ctx, k); err != nil {
					t.Error(err)
				}
				c.w.queue.Done(k)
			}
			return done()
		})
	}
	drain("the first look at every route", func() bool {
		return c.updates("target") == 1 && c.updates("sentinel") == 1 && c.updates("bystander") == 1
	})
	if got := c.accepted(ctx, destination.HTTPRoutes, "mesh", "sentinel"); got != "False/NoMatchingParent" {
		t.Fatalf("sentinel Accepted %s before its Service exists", got)
	}
	clear(looked)
	// The Service "new" (target's backend), then "barrier" (sentinel's
	// parent): the Service events come in that order, so once sentinel
	// is written again, whatever "new" queued has been queued too.
	for _, name := range []string{"new", "barrier"} {
		svc := services["mesh/echo-v2"].DeepCopy()
		svc.Name = name
		if _, err := c.kube.CoreV1().Services("mesh").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	drain("target and sentinel written again", func() bool {
		return c.updates("target") == 2 && c.updates("sentinel") == 2
	})
	if looked["bystander"] != 0 || c.updates("bystander") != 1 {
		t.Errorf("bystander looked at %d times, written %d times: Services it does not name woke it", looked["bystander"], c.updates("bystander"))
	}
	if got := c.accepted(ctx, destination.HTTPRoutes, "mesh", "sentinel"); got != "True/Accepted" {
		t.Errorf("sentinel Accepted %s once its Service exists", got)
	}
}

const (
	webRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}]}]
`
	consumerWebRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: client}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: mesh, port: 80}]
  rules: [{backendRefs: [{name: echo-v2, namespace: mesh, port: 80}]}]
`
	rpcRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}]}]
`
)

// TestWriterGRPCRouteConflicts: a GRPCRoute appearing on the port of an
// HTTPRoute of its namespace turns that HTTPRoute Conflicted; moving it to
// another port of the Service, or to another Service, gives the port back,
// and so does its removal; a consumer HTTPRoute (another group) stays
// Accepted throughout, and so does the GRPCRoute.
func TestWriterGRPCRouteConflicts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newFakeCluster(ctx, t, 2, []runtime.Object{services["mesh/echo"], services["mesh/echo-v2"]}, nil, webRoute, consumerWebRoute)
	done := make(chan error, 1)
	go func() { done <- c.w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	web := func() string { return c.accepted(ctx, destination.HTTPRoutes, "mesh", "web") }
	consumer := func() string { return c.accepted(ctx, destination.HTTPRoutes, "client", "web") }
	c.waitFor("both HTTPRoutes accepted", func() bool { return web() == "True/Accepted" && consumer() == "True/Accepted" })

	rpc := routeObject(t, rpcRoute)
	if _, err := c.dyn.Resource(destination.GRPCRoutes).Namespace("mesh").Create(ctx, rpc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the HTTPRoute conflicted", func() bool { return web() == "False/Conflicted" })
	c.waitFor("the GRPCRoute accepted", func() bool {
		return c.accepted(ctx, destination.GRPCRoutes, "mesh", "rpc") == "True/Accepted"
	})
	if got := consumer(); got != "True/Accepted" {
		t.Errorf("consumer HTTPRoute %s: a producer GRPCRoute is of another group", got)
	}

	// A spec change: the GRPCRoute moves to the Service's other port
	// (7070), then back to 80, then to a Service the HTTPRoutes do not
	// name (only the GRPCRoute's old parents lead to them).
	for _, step := range []struct {
		parent gatewayv1.ParentReference
		web    string
	}{
		{serviceParent("echo", 7070, ""), "True/Accepted"},
		{serviceParent("echo", 80, ""), "False/Conflicted"},
		{serviceParent("elsewhere", 80, ""), "True/Accepted"}, // a Service web names in no way
	} {
		c.moveGRPCRoute(ctx, "mesh", "rpc", step.parent)
		c.waitFor("the HTTPRoute "+step.web+" with the GRPCRoute on "+string(step.parent.Name)+":"+strconv.Itoa(int(*step.parent.Port)),
			func() bool { return web() == step.web })
		if got := consumer(); got != "True/Accepted" {
			t.Errorf("consumer HTTPRoute %s with the GRPCRoute on %s", got, step.parent.Name)
		}
	}

	if err := c.dyn.Resource(destination.GRPCRoutes).Namespace("mesh").Delete(ctx, "rpc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the HTTPRoute accepted again", func() bool { return web() == "True/Accepted" })
	if got := consumer(); got != "True/Accepted" {
		t.Errorf("consumer HTTPRoute %s after the GRPCRoute went", got)
	}
}

// moveGRPCRoute updates the spec of the GRPCRoute ns/name: parent is its
// only parentRef.
func (c *fakeCluster) moveGRPCRoute(ctx context.Context, ns, name string, parent gatewayv1.ParentReference) {
	c.t.Helper()
	res := c.dyn.Resource(destination.GRPCRoutes).Namespace(ns)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&parent)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(u.Object, []any{p}, "spec", "parentRefs"); err != nil {
		c.t.Fatal(err)
	}
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// runWriter runs the cluster's Writer until the test ends.
func (c *fakeCluster) runWriter(ctx context.Context, cancel context.CancelFunc) {
	done := make(chan error, 1)
	go func() { done <- c.w.Run(ctx) }()
	c.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Error(err)
		}
	})
}

// TestWriterGRPCRoutesThatApplyNowhereConflictWithNothing: a GRPCRoute
// with no rules (no routes) and an unsupported one (applied nowhere) on
// the port of an HTTPRoute of their namespace take the port over from
// nothing: the HTTPRoute stays Accepted, as the destination service
// applies it (destination.TestGRPCRoutesThatApplyNowhereTakeNoPort).
func TestWriterGRPCRoutesThatApplyNowhereConflictWithNothing(t *testing.T) {
	const (
		empty = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: empty, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: []
`
		regex = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: regex, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules: [{matches: [{method: {type: RegularExpression, service: "a.*"}}], backendRefs: [{name: echo-v2, port: 80}]}]
`
	)
	for name, grpc := range map[string]string{"empty": empty, "regex": regex} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			c := newFakeCluster(ctx, t, 2, []runtime.Object{services["mesh/echo"], services["mesh/echo-v2"]}, nil, webRoute, grpc)
			c.runWriter(ctx, cancel)
			c.waitFor("both routes written", func() bool { return c.updates("web") >= 1 && c.updates(name) >= 1 })
			if name == "regex" {
				if got := c.accepted(ctx, destination.GRPCRoutes, "mesh", name); got != "False/UnsupportedValue" {
					t.Errorf("the regex GRPCRoute %s, want False/UnsupportedValue", got)
				}
			}
			if got := c.accepted(ctx, destination.HTTPRoutes, "mesh", "web"); got != "True/Accepted" {
				t.Errorf("HTTPRoute %s next to the %s GRPCRoute, want True/Accepted: it takes no port", got, name)
			}
		})
	}
}

// TestWriterProducerGRPCRouteNamingItsNamespace: a producer GRPCRoute whose
// parentRef names the Service's namespace explicitly takes the port over
// from the producer HTTPRoute only: a consumer HTTPRoute of another
// namespace on the same port (another group) stays Accepted.
func TestWriterProducerGRPCRouteNamingItsNamespace(t *testing.T) {
	const explicit = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: mesh, port: 80}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}]}]
`
	ctx, cancel := context.WithCancel(context.Background())
	c := newFakeCluster(ctx, t, 2, []runtime.Object{services["mesh/echo"], services["mesh/echo-v2"]}, nil, webRoute, consumerWebRoute, explicit)
	c.runWriter(ctx, cancel)
	c.waitFor("the producer HTTPRoute conflicted", func() bool {
		return c.accepted(ctx, destination.HTTPRoutes, "mesh", "web") == "False/Conflicted"
	})
	c.waitFor("the consumer HTTPRoute written", func() bool { return c.updates("web") >= 2 })
	if got := c.accepted(ctx, destination.HTTPRoutes, "client", "web"); got != "True/Accepted" {
		t.Errorf("consumer HTTPRoute %s: the producer GRPCRoute is of another group", got)
	}
}

// TestWriterFollowerWritesNothingUntilItLeads: a replica that does not
// lead looks at the routes but writes no status; once it leads, Resync
// writes what changed meanwhile.
func TestWriterFollowerWritesNothingUntilItLeads(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newFakeCluster(ctx, t, 1, []runtime.Object{services["mesh/echo"]}, nil, targetRoute)
	var leading atomic.Bool
	c.w.cfg.Leading = leading.Load
	looked := 0
	drainQueue := func() {
		for c.w.queue.Len() > 0 {
			k, _ := c.w.queue.Get()
			looked++
			if err := c.w.sync(ctx, k); err != nil {
				t.Error(err)
			}
			c.w.queue.Done(k)
		}
	}
	c.waitFor("the follower looks at the route", func() bool { drainQueue(); return looked > 0 })
	if n := c.updates("target"); n != 0 {
		t.Fatalf("a follower wrote %d status updates", n)
	}
	leading.Store(true)
	c.w.Resync()
	c.waitFor("the new leader writes the status", func() bool { drainQueue(); return c.updates("target") == 1 })
	if got := c.accepted(ctx, destination.HTTPRoutes, "mesh", "target"); got != "True/Accepted" {
		t.Errorf("target Accepted %q after the leader wrote it", got)
	}
}
