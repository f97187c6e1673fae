// Package destination tells proxies where their destinations are: it
// follows Services, EndpointSlices and Pods with client-go informers and
// answers, for a target (a Service name and port, a ClusterIP and port, or a
// pod IP and port), the ready endpoints with what the proxy needs to reach
// each one (meshed or not, its SPIFFE ID, workload, zone), then streams a new
// snapshot whenever one of them changes. A Service port's snapshot also
// carries the HTTPRoutes and GRPCRoutes attached to it (GAMMA): producer
// routes of the Service's namespace and consumer routes of others,
// translated by TranslateHTTPRoute and TranslateGRPCRoute; a route meshctl
// cannot honour in full is applied nowhere (its status says why, see
// package routestatus). Pod-IP targets never get routes.
package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

const (
	clusterIPIndex = "clusterIP"
	podIPIndex     = "podIP"
	// proxyLabel marks meshed pods (the injector sets it).
	proxyLabel    = meshnames.VersionLabel
	workloadLabel = meshnames.WorkloadLabel
	opaquePorts   = meshnames.OpaquePorts
)

// Watcher answers destination lookups from informer caches.
type Watcher struct {
	trustDomain   string
	clusterDomain string
	services      cache.SharedIndexInformer
	slices        cache.SharedIndexInformer
	pods          cache.SharedIndexInformer
	routes        cache.SharedIndexInformer // HTTPRoutes (unstructured); nil: none
	grpcRoutes    cache.SharedIndexInformer // GRPCRoutes (unstructured); nil: none
	translated    *routeCache               // the routes' translations
	serviceLister listerscorev1.ServiceLister
	sliceLister   listersdiscoveryv1.EndpointSliceLister

	// mu guards subs: per Service key ("ns/name") or pod IP, the waiters to
	// wake when it may have changed.
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// New registers the informers the watcher needs on factory; start the
// factory and wait for Synced before serving.
func New(factory informers.SharedInformerFactory, trustDomain, clusterDomain string) (*Watcher, error) {
	w := &Watcher{
		trustDomain: trustDomain, clusterDomain: clusterDomain,
		services:   factory.Core().V1().Services().Informer(),
		slices:     factory.Discovery().V1().EndpointSlices().Informer(),
		pods:       factory.Core().V1().Pods().Informer(),
		subs:       map[string]map[chan struct{}]struct{}{},
		translated: newRouteCache(),
	}
	w.serviceLister = factory.Core().V1().Services().Lister()
	w.sliceLister = factory.Discovery().V1().EndpointSlices().Lister()
	if err := w.services.AddIndexers(cache.Indexers{clusterIPIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return nil, nil
		}
		var ips []string
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				ips = append(ips, ip)
			}
		}
		return ips, nil
	}}); err != nil {
		return nil, err
	}
	if err := w.pods.AddIndexers(cache.Indexers{podIPIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.HostNetwork || terminated(p) {
			// A finished pod (a completed Job's) keeps its IP in its status,
			// but the IP may already be another pod's.
			return nil, nil
		}
		var ips []string
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return ips, nil
	}}); err != nil {
		return nil, err
	}
	notifyService := func(obj any) {
		if s, ok := obj.(*corev1.Service); ok {
			w.notify(s.Namespace + "/" + s.Name)
		}
	}
	notifySlice := func(obj any) {
		if s, ok := tombstone(obj).(*discoveryv1.EndpointSlice); ok {
			w.notify(s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName])
		}
	}
	notifyPod := func(obj any) {
		p, ok := tombstone(obj).(*corev1.Pod)
		if !ok {
			return
		}
		for _, ip := range p.Status.PodIPs {
			w.notify(ip.IP)
		}
		// A pod's meshed state or identity feeds every Service selecting it;
		// the EndpointSlice change that usually follows covers most cases,
		// and the periodic resync the rest.
		w.notifyNamespace(p.Namespace)
	}
	for _, reg := range []struct {
		inf cache.SharedIndexInformer
		fn  func(any)
	}{{w.services, notifyService}, {w.slices, notifySlice}, {w.pods, notifyPod}} {
		fn := reg.fn
		if _, err := reg.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: fn, UpdateFunc: func(_, n any) { fn(n) }, DeleteFunc: func(o any) { fn(tombstone(o)) },
		}); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// terminated reports whether a pod has finished for good: its IP is no
// longer its own.
func terminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// podByIP returns the pod that holds ip now: never a finished one (the index
// leaves them out), and one being deleted only when no other pod has the
// IP. A pod being deleted still serves its in-flight connections with its
// own identity, but its IP may already have been given to a new pod (the
// old object lingers until the kubelet or a finalizer lets it go); the new
// pod is the one that answers. Two live pods never share an IP; should the
// cache say so for a moment, the choice is stable (by namespace and name).
func (w *Watcher) podByIP(ip string) *corev1.Pod {
	objs, _ := w.pods.GetIndexer().ByIndex(podIPIndex, ip)
	var best *corev1.Pod
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		switch {
		case best == nil:
			best = p
		case (best.DeletionTimestamp != nil) != (p.DeletionTimestamp != nil):
			if best.DeletionTimestamp != nil {
				best = p
			}
		case p.Namespace+"/"+p.Name < best.Namespace+"/"+best.Name:
			best = p
		}
	}
	return best
}

func tombstone(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

// Services returns the Service informer.
func (w *Watcher) Services() cache.SharedIndexInformer { return w.services }

// EndpointSlices returns the EndpointSlice informer.
func (w *Watcher) EndpointSlices() cache.SharedIndexInformer { return w.slices }

// Pods returns the Pod informer.
func (w *Watcher) Pods() cache.SharedIndexInformer { return w.pods }

// Synced reports whether the caches are filled.
func (w *Watcher) Synced() bool {
	return w.services.HasSynced() && w.slices.HasSynced() && w.pods.HasSynced()
}

// subscribe registers interest in a key: ch gets a signal when it may
// have changed.
func (w *Watcher) subscribe(key string, ch chan struct{}) func() {
	w.mu.Lock()
	if w.subs[key] == nil {
		w.subs[key] = map[chan struct{}]struct{}{}
	}
	w.subs[key][ch] = struct{}{}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.subs[key], ch)
		if len(w.subs[key]) == 0 {
			delete(w.subs, key)
		}
		w.mu.Unlock()
	}
}

func (w *Watcher) notify(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *Watcher) notifyNamespace(ns string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, chans := range w.subs {
		if strings.HasPrefix(key, ns+"/") {
			for ch := range chans {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
}

// target is a parsed lookup.
type target struct {
	service *corev1.Service // when the target is a Service
	port    corev1.ServicePort
	podIP   string // when the target is a pod
	podPort int
	key     string // what to subscribe to
}

// ErrBadTarget is a target that is not host:port.
var ErrBadTarget = errors.New("the target must be host:port")

// parse finds what a target names. A zero target (no service, no pod) is
// outside the cluster.
func (w *Watcher) parse(raw string) (target, error) {
	host, portStr, err := net.SplitHostPort(raw)
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrBadTarget, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return target{}, fmt.Errorf("%w: bad port %q", ErrBadTarget, portStr)
	}
	var svc *corev1.Service
	if ip, err := netip.ParseAddr(host); err == nil {
		// The form the indexes hold (and the proxies send): IPv4 unmapped,
		// no zone.
		ip = ip.Unmap().WithZone("")
		objs, _ := w.services.GetIndexer().ByIndex(clusterIPIndex, ip.String())
		if len(objs) > 0 {
			svc = objs[0].(*corev1.Service)
		} else {
			return target{podIP: ip.String(), podPort: port, key: ip.String()}, nil
		}
	} else {
		name, ns, explicit, ok := w.serviceName(host)
		if !ok {
			return target{}, nil
		}
		if svc, err = w.serviceLister.Services(ns).Get(name); err != nil {
			if explicit {
				return target{key: ns + "/" + name}, nil // a cluster name: it may appear later
			}
			return target{}, nil // "a.b" that is no Service: a name outside the cluster
		}
	}
	for _, p := range svc.Spec.Ports {
		if int(p.Port) == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return target{service: svc, port: p, key: svc.Namespace + "/" + svc.Name}, nil
		}
	}
	return target{key: svc.Namespace + "/" + svc.Name}, nil
}

// serviceName reads <name>.<ns>[.svc[.<cluster domain>]], in any case
// (DNS names are not case-sensitive); explicit says the name had the .svc
// suffix, so it can only be a cluster name. A name or namespace that is no
// DNS label is no cluster name.
func (w *Watcher) serviceName(host string) (name, ns string, explicit, ok bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	host = strings.TrimSuffix(host, "."+w.clusterDomain)
	host, explicit = strings.CutSuffix(host, ".svc")
	parts := strings.Split(host, ".")
	if len(parts) != 2 || len(validation.IsDNS1123Label(parts[0])) > 0 || len(validation.IsDNS1123Label(parts[1])) > 0 {
		return "", "", false, false
	}
	return parts[0], parts[1], explicit, true
}

// Resolve answers a target now, with every namespace's consumer routes.
func (w *Watcher) Resolve(raw string) (api.Destination, error) {
	return w.ResolveFor(raw, AllConsumers)
}

// ResolveFor answers a target now for a client of namespace client: the
// producer routes and that namespace's consumer routes.
func (w *Watcher) ResolveFor(raw, client string) (api.Destination, error) {
	t, err := w.parse(raw)
	if err != nil {
		return api.Destination{}, err
	}
	return w.resolve(t, client), nil
}

func (w *Watcher) resolve(t target, client string) api.Destination {
	switch {
	case t.service != nil:
		d := w.serviceDestination(t.service, t.port)
		d.Routes = w.routesFor(t.service, t.port, client)
		return d
	case t.podIP != "":
		pod := w.podByIP(t.podIP)
		if pod == nil {
			return api.Destination{Known: false}
		}
		return api.Destination{Known: true, Endpoints: []api.Endpoint{w.endpoint(pod, t.podIP, t.podPort, "", false)}}
	case t.key != "":
		return api.Destination{Known: true, Endpoints: []api.Endpoint{}} // a Service with no such port (yet)
	}
	return api.Destination{Known: false}
}

// serviceDestination lists a Service port's ready endpoints.
func (w *Watcher) serviceDestination(svc *corev1.Service, port corev1.ServicePort) api.Destination {
	d := api.Destination{Known: true, Service: svc.Name + "." + svc.Namespace, Endpoints: []api.Endpoint{}, Annotations: meshAnnotations(svc.Annotations)}
	slices, err := w.sliceLister.EndpointSlices(svc.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name}))
	if err != nil {
		return d
	}
	h2 := port.AppProtocol != nil && (*port.AppProtocol == "kubernetes.io/h2c" || *port.AppProtocol == "h2c")
	seen := map[string]bool{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		targetPort := -1
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == port.Name && p.Port != nil {
				targetPort = int(*p.Port)
			}
		}
		if targetPort < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			zone := ""
			if e.Zone != nil {
				zone = *e.Zone
			}
			for _, addr := range e.Addresses {
				if seen[addr] {
					continue
				}
				seen[addr] = true
				var pod *corev1.Pod
				if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
					if obj, ok, _ := w.pods.GetIndexer().GetByKey(svc.Namespace + "/" + e.TargetRef.Name); ok {
						pod = obj.(*corev1.Pod)
					}
				}
				d.Endpoints = append(d.Endpoints, w.endpoint(pod, addr, targetPort, zone, h2))
			}
		}
	}
	slicesSortEndpoints(d.Endpoints)
	return d
}

// endpoint describes one address; pod may be nil (an endpoint not backed by a pod).
func (w *Watcher) endpoint(pod *corev1.Pod, addr string, port int, zone string, h2 bool) api.Endpoint {
	e := api.Endpoint{Addr: net.JoinHostPort(addr, strconv.Itoa(port)), Zone: zone, Weight: 1, HTTP2: h2}
	if pod == nil {
		return e
	}
	if _, meshed := pod.Labels[proxyLabel]; meshed {
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		e.Identity = "spiffe://" + w.trustDomain + "/ns/" + pod.Namespace + "/sa/" + sa
	}
	e.Workload = pod.Labels[workloadLabel]
	for _, p := range strings.Split(pod.Annotations[opaquePorts], ",") {
		if strings.TrimSpace(p) == strconv.Itoa(port) {
			e.Opaque = true
		}
	}
	return e
}

func slicesSortEndpoints(eps []api.Endpoint) {
	slices.SortFunc(eps, func(a, b api.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
}

// meshAnnotations keeps a Service's *.meshctl.io annotations.
func meshAnnotations(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if strings.Contains(k, ".meshctl.io/") || strings.HasPrefix(k, "meshctl.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// Watch calls send with the target's destination now and after every
// change, until ctx ends or send fails. Unchanged snapshots are not resent.
// The snapshots carry every namespace's consumer routes.
func (w *Watcher) Watch(ctx context.Context, raw string, send func(api.Destination) error) error {
	return w.WatchFor(ctx, raw, AllConsumers, send)
}

// WatchFor is Watch for a client of namespace client: the snapshots carry
// the producer routes and that namespace's consumer routes only.
func (w *Watcher) WatchFor(ctx context.Context, raw, client string, send func(api.Destination) error) error {
	t, err := w.parse(raw)
	if err != nil {
		return err
	}
	key := t.key
	if key == "" { // outside the cluster: nothing to follow, but the stream stays
		if err := send(w.resolve(t, client)); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	// The target's key, and the keys of the Services its routes send to.
	ch := make(chan struct{}, 1)
	subs := map[string]func(){key: w.subscribe(key, ch)}
	defer func() {
		for _, unsubscribe := range subs {
			unsubscribe()
		}
	}()
	var last api.Destination
	first := true
	for {
		// A Service may appear or change its ports: parse again each time.
		if t2, err := w.parse(raw); err == nil {
			t = t2
		}
		d := w.resolve(t, client)
		follow := map[string]bool{key: true}
		for _, r := range d.Routes {
			for _, b := range r.Backends {
				if b.Service != "" {
					follow[backendKey(b.Service)] = true
				}
			}
			for _, m := range r.Mirrors {
				if m.Backend.Service != "" {
					follow[backendKey(m.Backend.Service)] = true
				}
			}
		}
		for k := range follow {
			if subs[k] == nil {
				subs[k] = w.subscribe(k, ch)
			}
		}
		for k, unsubscribe := range subs {
			if !follow[k] {
				unsubscribe()
				delete(subs, k)
			}
		}
		if first || !equal(d, last) {
			if err := send(d); err != nil {
				return err
			}
			last, first = d, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

func equal(a, b api.Destination) bool {
	if a.Known != b.Known || a.Service != b.Service || len(a.Endpoints) != len(b.Endpoints) || len(a.Annotations) != len(b.Annotations) {
		return false
	}
	if !reflect.DeepEqual(a.Routes, b.Routes) {
		return false
	}
	for i := range a.Endpoints {
		if a.Endpoints[i] != b.Endpoints[i] {
			return false
		}
	}
	for k, v := range a.Annotations {
		if b.Annotations[k] != v {
			return false
		}
	}
	return true
}
