package routestatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/internal/gamma"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// Config configures a Writer.
type Config struct {
	// Client updates the routes' status subresource. Required.
	Client dynamic.Interface
	// HTTPRoutes and GRPCRoutes are the routes' informers (unstructured
	// objects); nil: that kind is not followed. Default: both nil, nothing
	// to write.
	HTTPRoutes, GRPCRoutes cache.SharedIndexInformer
	// Services is the Service informer: a Service appearing, going or
	// changing its ports changes its routes' conditions. Required.
	Services cache.SharedIndexInformer
	// Workers is how many routes are written at once. Default: 2.
	Workers int
	// Now is the clock of lastTransitionTime. Default: time.Now.
	Now func() time.Time
	// Leading reports whether this replica is the one that writes (see
	// package leader); the others follow the routes but write nothing.
	// Call Writer.Resync when it starts leading. Default: always.
	Leading func() bool
	// Log gets the failed updates. Default: slog.Default().
	Log *slog.Logger
}

// withDefaults returns cfg with its unset fields at their defaults.
func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Validate checks that the required fields are set.
func (c Config) Validate() error {
	if c.Client == nil || c.Services == nil {
		return errors.New("routestatus: Client and Services are required")
	}
	return nil
}

// servicesIndex indexes the route informers by every Service ("ns/name")
// a route names, as a parent or as a backend (mirrors included): the
// routes whose status a change of that Service may change.
const servicesIndex = "routestatus.services"

// key names a route to write: its resource and namespace/name.
type key struct {
	kind      string // destination.KindHTTPRoute or KindGRPCRoute
	namespace string
	name      string
}

// Writer keeps the status of the routes attached to Services.
type Writer struct {
	cfg      Config
	services listerscorev1.ServiceLister
	queue    workqueue.TypedRateLimitingInterface[key]

	// mu guards written: per route, the resourceVersion of the cached copy
	// its last status update was made from. While the cache still holds
	// that copy, the update has not come back yet and the route is not
	// written again (the update's own event queues it once it has).
	mu      sync.Mutex
	written map[key]string
}

// New registers the Writer's event handlers on the informers; call it
// before they start, then Run.
func New(cfg Config) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := &Writer{
		cfg:      cfg,
		services: listerscorev1.NewServiceLister(cfg.Services.GetIndexer()),
		written:  map[key]string{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "route-status"}),
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{destination.KindHTTPRoute: cfg.HTTPRoutes, destination.KindGRPCRoute: cfg.GRPCRoutes} {
		if inf == nil {
			continue
		}
		if err := inf.AddIndexers(cache.Indexers{servicesIndex: serviceKeys(kind)}); err != nil {
			return nil, fmt.Errorf("index %ss by Service: %w", kind, err)
		}
		enqueue := func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				ns, name, _ := cache.SplitMetaNamespaceKey(k)
				w.queue.Add(key{kind: kind, namespace: ns, name: name})
			}
		}
		handler := cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
		}
		if kind == destination.KindGRPCRoute {
			// A GRPCRoute coming, going or changing its spec may take
			// Service ports over from, or give them back to, the
			// HTTPRoutes of its namespace (GEP-1426): look at those that
			// name its parent Services, before and after.
			handler = cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { enqueue(obj); w.enqueueConflicts(obj) },
				DeleteFunc: func(obj any) { enqueue(obj); w.enqueueConflicts(obj) },
				UpdateFunc: func(o, n any) {
					enqueue(n)
					if !sameSpec(o, n) {
						w.enqueueConflicts(o)
						w.enqueueConflicts(n)
					}
				},
			}
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("follow %s: %w", kind, err)
		}
	}
	// A Service's appearance, removal or new ports may change the parents
	// or backends of the routes that name it: look at those (the queue
	// merges repeats).
	byService := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			w.enqueueService(k)
		}
	}
	if _, err := cfg.Services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: byService, DeleteFunc: byService,
		UpdateFunc: func(o, n any) {
			os, ok1 := o.(*corev1.Service)
			ns, ok2 := n.(*corev1.Service)
			if !ok1 || !ok2 || !samePorts(os.Spec.Ports, ns.Spec.Ports) {
				byService(n)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("follow Services: %w", err)
	}
	return w, nil
}

// serviceKeys is the servicesIndex of a route informer of kind: the
// "ns/name" of every Service the route names as a parent or a backend.
func serviceKeys(kind string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, nil
		}
		r, _, err := read(u, kind)
		if err != nil {
			return nil, nil // unreadable: no status to write either
		}
		keys := parentServices(r.Namespace, r.Parents)
		for _, b := range r.Translation.Backends {
			if k := b.Namespace + "/" + b.Name; b.ServiceKind && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		return keys, nil
	}
}

// parentServices are the "ns/name" of the Services a route of namespace
// ns names as parents, each once.
func parentServices(ns string, parents []gatewayv1.ParentReference) []string {
	var out []string
	for _, p := range parents {
		if k := gamma.ParentNamespace(ns, p) + "/" + string(p.Name); gamma.IsServiceParent(p) && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// sameSpec reports whether two copies of a route have the same spec (a
// status update changes nothing for other routes).
func sameSpec(o, n any) bool {
	uo, ok1 := o.(*unstructured.Unstructured)
	un, ok2 := n.(*unstructured.Unstructured)
	return ok1 && ok2 && reflect.DeepEqual(uo.Object["spec"], un.Object["spec"])
}

// enqueueService queues the routes that name the Service svc ("ns/name").
func (w *Writer) enqueueService(svc string) {
	for kind, inf := range map[string]cache.SharedIndexInformer{destination.KindHTTPRoute: w.cfg.HTTPRoutes, destination.KindGRPCRoute: w.cfg.GRPCRoutes} {
		if inf == nil {
			continue
		}
		objs, _ := inf.GetIndexer().ByIndex(servicesIndex, svc)
		for _, obj := range objs {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.queue.Add(key{kind: kind, namespace: u.GetNamespace(), name: u.GetName()})
			}
		}
	}
}

// enqueueConflicts queues the HTTPRoutes of a GRPCRoute's namespace that
// name one of its parent Services: whether the GRPCRoute takes their
// ports over may have changed.
func (w *Writer) enqueueConflicts(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || w.cfg.HTTPRoutes == nil {
		return
	}
	r, _, err := read(u, destination.KindGRPCRoute)
	if err != nil {
		return
	}
	for _, svc := range parentServices(r.Namespace, r.Parents) {
		objs, _ := w.cfg.HTTPRoutes.GetIndexer().ByIndex(servicesIndex, svc)
		for _, o := range objs {
			if hr, ok := o.(*unstructured.Unstructured); ok && hr.GetNamespace() == r.Namespace {
				w.queue.Add(key{kind: destination.KindHTTPRoute, namespace: hr.GetNamespace(), name: hr.GetName()})
			}
		}
	}
}

// grpcParents lists the supported GRPCRoutes of namespace ns that name one
// of the Services of parents, by name: what an HTTPRoute of ns with these
// parents needs to know of the ports taken over from it (Route.GRPCRoutes).
func (w *Writer) grpcParents(ns string, parents []gatewayv1.ParentReference) []GRPCParents {
	if w.cfg.GRPCRoutes == nil {
		return nil
	}
	var out []GRPCParents
	for _, svc := range parentServices(ns, parents) {
		objs, _ := w.cfg.GRPCRoutes.GetIndexer().ByIndex(servicesIndex, svc)
		for _, obj := range objs {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok || u.GetNamespace() != ns {
				continue
			}
			name := u.GetNamespace() + "/" + u.GetName()
			if slices.ContainsFunc(out, func(g GRPCParents) bool { return g.Name == name }) {
				continue
			}
			g, _, err := read(u, destination.KindGRPCRoute)
			// Unsupported: applied nowhere. No rules: no routes, so no
			// port taken over (as the destination service does).
			if err != nil || g.Translation.Unsupported != "" || len(g.Translation.Routes) == 0 {
				continue
			}
			out = append(out, GRPCParents{Name: name, Parents: g.Parents})
		}
	}
	slices.SortFunc(out, func(a, b GRPCParents) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port {
			return false
		}
	}
	return true
}

// Resync looks at every route again: call it when this replica starts
// to lead, for what changed while another one did.
func (w *Writer) Resync() {
	for kind, inf := range map[string]cache.SharedIndexInformer{destination.KindHTTPRoute: w.cfg.HTTPRoutes, destination.KindGRPCRoute: w.cfg.GRPCRoutes} {
		if inf == nil {
			continue
		}
		for _, k := range inf.GetStore().ListKeys() {
			ns, name, _ := cache.SplitMetaNamespaceKey(k)
			w.queue.Add(key{kind: kind, namespace: ns, name: name})
		}
	}
}

// Run writes statuses until ctx ends; the informers must have synced. Its
// workers stop, and Run returns, when ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	done := make(chan struct{})
	for range w.cfg.Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for w.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	w.queue.ShutDown()
	for range w.cfg.Workers {
		<-done
	}
	return nil
}

func (w *Writer) next(ctx context.Context) bool {
	k, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(k)
	if err := w.sync(ctx, k); err != nil {
		if ctx.Err() == nil {
			w.cfg.Log.Warn("route status not written; retrying", "kind", k.kind, "route", k.namespace+"/"+k.name, "error", err)
		}
		w.queue.AddRateLimited(k)
		return true
	}
	w.queue.Forget(k)
	return true
}

// sync writes one route's status if it changed.
func (w *Writer) sync(ctx context.Context, k key) error {
	inf, gvr := w.cfg.HTTPRoutes, destination.HTTPRoutes
	if k.kind == destination.KindGRPCRoute {
		inf, gvr = w.cfg.GRPCRoutes, destination.GRPCRoutes
	}
	obj, ok, err := inf.GetStore().GetByKey(k.namespace + "/" + k.name)
	if err != nil || !ok {
		w.mu.Lock()
		delete(w.written, k)
		w.mu.Unlock()
		return err // gone: nothing to write
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	w.mu.Lock()
	rv, seen := w.written[k]
	stale := seen && rv == u.GetResourceVersion()
	w.mu.Unlock()
	if stale {
		return nil
	}
	route, existing, err := read(u, k.kind)
	if err != nil {
		return err
	}
	if k.kind == destination.KindHTTPRoute {
		route.GRPCRoutes = w.grpcParents(route.Namespace, route.Parents)
	}
	lookup := func(ns, name string) (*corev1.Service, bool) {
		s, err := w.services.Services(ns).Get(name)
		return s, err == nil
	}
	parents := Parents(route, lookup, existing, metav1.NewTime(w.cfg.Now().Truncate(time.Second)))
	if Equal(parents, existing) {
		return nil
	}
	if w.cfg.Leading != nil && !w.cfg.Leading() {
		return nil // the leader writes it; Resync catches up on leading
	}
	if err := w.write(ctx, gvr, u, parents); err != nil {
		return err
	}
	w.mu.Lock()
	w.written[k] = u.GetResourceVersion()
	w.mu.Unlock()
	return nil
}

// read takes what Parents needs out of a route object.
func read(u *unstructured.Unstructured, kind string) (Route, []gatewayv1.RouteParentStatus, error) {
	r := Route{Namespace: u.GetNamespace(), Generation: u.GetGeneration()}
	if kind == destination.KindGRPCRoute {
		var gr gatewayv1.GRPCRoute
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &gr); err != nil {
			return r, nil, fmt.Errorf("read GRPCRoute: %w", err)
		}
		r.Parents, r.Translation = gr.Spec.ParentRefs, destination.TranslateGRPCRoute(&gr)
		return r, gr.Status.Parents, nil
	}
	var hr gatewayv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
		return r, nil, fmt.Errorf("read HTTPRoute: %w", err)
	}
	r.Parents, r.Translation = hr.Spec.ParentRefs, destination.TranslateHTTPRoute(&hr)
	return r, hr.Status.Parents, nil
}

// write updates the status subresource of a copy of the cached object.
// A conflict (someone wrote first) is retried from the cache's newer copy.
func (w *Writer) write(ctx context.Context, gvr schema.GroupVersionResource, cached *unstructured.Unstructured, parents []gatewayv1.RouteParentStatus) error {
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&gatewayv1.RouteStatus{Parents: parents})
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	if len(parents) == 0 {
		status["parents"] = []any{} // required by the schema, even when empty
	}
	u := cached.DeepCopy()
	u.Object["status"] = status
	_, err = w.cfg.Client.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: meshnames.FieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// Another replica, or a newer spec, got there first: the newer
		// object's informer event queues the route again.
		return nil
	case err != nil:
		return fmt.Errorf("update %s %s/%s status: %w", gvr.Resource, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}
