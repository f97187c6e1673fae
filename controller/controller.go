package controller

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/controller/adminapi"
	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/controller/identitysvc"
	"github.com/meshctl/meshctl/controller/inbound"
	"github.com/meshctl/meshctl/controller/injector"
	"github.com/meshctl/meshctl/controller/leader"
	"github.com/meshctl/meshctl/controller/routestatus"
	"github.com/meshctl/meshctl/controller/trustbundle"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// served reports whether the API server serves a resource (its CRD is
// installed); the controller reads only what exists when it starts.
func (c *Controller) served(gvr schema.GroupVersionResource) bool {
	list, err := c.cfg.Client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err == nil {
		for _, r := range list.APIResources {
			if r.Name == gvr.Resource {
				return true
			}
		}
	}
	c.log.Warn("not served by the API server; not following it (install its CRD and restart the controller)", "resource", gvr.String())
	return false
}

// nilDynamic lets a factory be made without a dynamic client; it is then
// never started.
func nilDynamic(d dynamic.Interface) dynamic.Interface {
	if d == nil {
		return dynamic.NewForConfigOrDie(&rest.Config{Host: "http://127.0.0.1:1"})
	}
	return d
}

// shutdownTimeout bounds Run's shutdown: the servers' graceful stop and
// the exit of every goroutine Run started.
const shutdownTimeout = 5 * time.Second

// Controller is a running mesh-controller.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	trust *trust
	reg   *prometheus.Registry
	key   crypto.Signer
	own   atomic.Pointer[tls.Certificate]
	ready atomic.Bool
	// listen opens the listener of the named server ("control", "admin",
	// "admin-api", "webhook") on its configured address: net.Listen, or a
	// test's hook that learns the ports of 127.0.0.1:0.
	listen func(server, addr string) (net.Listener, error)
}

// New checks the configuration.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, log: cfg.Log.With("component", "controller"), reg: prometheus.NewRegistry(), key: key,
		listen: func(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }}
	c.trust = &trust{ns: cfg.Namespace, changed: make(chan struct{}, 1), log: func(msg string, args ...any) { c.log.Info(msg, args...) }}
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return c, nil
}

// Run serves until ctx ends, then shuts down within a few seconds
// (shutdownTimeout): it returns once the servers have stopped and every
// goroutine it started has exited (the route-status election has released
// its Lease), or the timeout has passed.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	p := &parts{}
	defer func() {
		cancel() // the informers were started with ctx: Shutdown waits for them
		p.shutdown()
	}()
	if err := c.watchOwn(ctx, p); err != nil {
		return err
	}
	if err := c.build(p); err != nil {
		return err
	}
	if err := c.syncCaches(ctx, p); err != nil {
		return err
	}
	servers, adminAPI, err := c.servers(ctx, p)
	if err != nil {
		return err
	}
	if err := c.listenAll(servers); err != nil {
		return err
	}
	return c.serve(ctx, cancel, p, servers, adminAPI)
}

// parts is what Run builds before it serves: the informer factories, and
// the watchers and services made on them.
type parts struct {
	// own: the control plane's own Secrets and ConfigMaps; cluster:
	// Services, EndpointSlices, Pods and Namespaces everywhere, slimmed;
	// copies: the trust bundle's copies; custom: custom resources.
	own, cluster, copies informers.SharedInformerFactory
	custom               dynamicinformer.DynamicSharedInformerFactory
	// synced are the caches to wait for before serving.
	synced []cache.InformerSynced

	hook           *webhookCert
	dest           *destination.Watcher
	namespaces     coreinformers.NamespaceInformer
	copier         *trustbundle.Copier
	inbound        *inbound.Server
	podBySourceIP  func(netip.Addr) (string, string, bool)
	statuses       *routestatus.Writer // nil: no routes are followed
	statusElection *leader.Election    // set with statuses
}

// shutdown stops the factories made so far and waits for their informers;
// the context they were started with must have ended.
func (p *parts) shutdown() {
	for _, f := range []interface{ Shutdown() }{p.custom, p.copies, p.cluster, p.own} {
		if f != nil {
			f.Shutdown()
		}
	}
}

// watchOwn follows the control plane's own Secrets and ConfigMaps (the
// webhook's certificate, the issuer and the trust bundle) and waits for a
// valid issuer and bundle.
func (c *Controller) watchOwn(ctx context.Context, p *parts) error {
	p.own = informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 10*time.Minute, informers.WithNamespace(c.cfg.Namespace))
	p.hook = &webhookCert{log: c.log.With("component", "webhook")}
	if err := p.hook.watch(p.own); err != nil {
		return err
	}
	return c.trust.watch(ctx, p.own, 2*time.Minute)
}

// build makes the cluster-wide informers (not started yet) and the
// services that read them: destinations, the trust bundle's copies,
// AuthorizationPolicies and routes when their CRDs are served, route
// status, inbound policy and issuance's pod lookup.
func (c *Controller) build(p *parts) error {
	p.cluster = informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 10*time.Minute, informers.WithTransform(slim))
	dest, err := destination.New(p.cluster, c.cfg.TrustDomain, c.cfg.ClusterDomain)
	if err != nil {
		return err
	}
	p.dest = dest
	p.namespaces = p.cluster.Core().V1().Namespaces()
	nsInformer := p.namespaces.Informer()
	// The trust bundle's copies in meshed namespaces.
	p.copies = trustbundle.NewFactory(c.cfg.Client, meshnames.TrustRootsConfigMap, 10*time.Minute)
	if p.copier, err = trustbundle.New(c.cfg.Client, p.copies, c.cfg.Namespace, meshnames.TrustRootsConfigMap, c.log.With("component", "trust-bundle-copies")); err != nil {
		return err
	}
	// Custom resources: AuthorizationPolicies (and HTTPRoutes), when the
	// controller can read them.
	var policies cache.SharedIndexInformer
	p.custom = dynamicinformer.NewDynamicSharedInformerFactory(nilDynamic(c.cfg.Dynamic), 10*time.Minute)
	p.synced = []cache.InformerSynced{dest.Synced, nsInformer.HasSynced, p.copier.Synced}
	if c.cfg.Dynamic != nil && c.served(policyapi.GroupVersionResource) {
		policies = p.custom.ForResource(policyapi.GroupVersionResource).Informer()
		p.synced = append(p.synced, policies.HasSynced)
	}
	var httpRoutes, grpcRoutes cache.SharedIndexInformer
	if c.cfg.Dynamic != nil && c.served(destination.HTTPRoutes) {
		httpRoutes = p.custom.ForResource(destination.HTTPRoutes).Informer()
		if err := dest.WithRoutes(httpRoutes); err != nil {
			return err
		}
		p.synced = append(p.synced, httpRoutes.HasSynced)
	}
	if c.cfg.Dynamic != nil && c.served(destination.GRPCRoutes) {
		grpcRoutes = p.custom.ForResource(destination.GRPCRoutes).Informer()
		if err := dest.WithGRPCRoutes(grpcRoutes); err != nil {
			return err
		}
		p.synced = append(p.synced, grpcRoutes.HasSynced)
	}
	// Route status (Accepted, ResolvedRefs) for the routes attached to
	// Services, written by the one replica that holds the Lease
	// RouteStatusLease: two versions during a rollout never fight over a
	// route's conditions.
	if httpRoutes != nil || grpcRoutes != nil {
		p.statusElection = &leader.Election{Client: c.cfg.Client, Namespace: c.cfg.Namespace, Name: meshnames.RouteStatusLease,
			Identity: c.cfg.Identity, Log: c.log.With("component", "route-status"), Registerer: c.reg}
		if p.statuses, err = routestatus.New(routestatus.Config{
			Client: c.cfg.Dynamic, HTTPRoutes: httpRoutes, GRPCRoutes: grpcRoutes, Services: dest.Services(),
			Leading: p.statusElection.Leading, Log: c.log.With("component", "route-status"),
		}); err != nil {
			return err
		}
		p.statusElection.OnLead = p.statuses.Resync
	}
	if p.inbound, err = inbound.New(inbound.Config{
		Pods: dest.Pods(), Namespaces: nsInformer, Policies: policies,
		TrustDomain: c.cfg.TrustDomain, Default: c.cfg.DefaultInboundPolicy, Log: c.log.With("service", "inbound-policy"),
	}); err != nil {
		return err
	}
	if p.podBySourceIP, err = sourcePods(dest.Pods()); err != nil {
		return err
	}
	for name, inf := range map[string]cache.SharedIndexInformer{
		"services": dest.Services(), "endpointslices": dest.EndpointSlices(), "pods": dest.Pods(), "namespaces": nsInformer,
	} {
		c.countObjects(name, inf)
	}
	return nil
}

// syncCaches starts the informers build made and waits, up to two
// minutes, for their caches to fill.
func (c *Controller) syncCaches(ctx context.Context, p *parts) error {
	p.cluster.Start(ctx.Done())
	p.copies.Start(ctx.Done())
	if c.cfg.Dynamic != nil {
		p.custom.Start(ctx.Done())
	}
	syncCtx, syncDone := context.WithTimeout(ctx, 2*time.Minute)
	defer syncDone()
	if !cache.WaitForCacheSync(syncCtx.Done(), p.synced...) {
		return errors.New("the Service, EndpointSlice, Pod, Namespace, ConfigMap and AuthorizationPolicy caches did not sync (is the controller allowed to list and watch them, and are the CRDs installed?)")
	}
	return nil
}

// server is one of Run's HTTP servers and, once listenAll has opened it,
// its listener.
type server struct {
	name string // as the listen hook gets it
	addr string // the configured address
	srv  *http.Server
	tls  bool // served with srv.TLSConfig
	ln   net.Listener
}

// servers makes the identity service, the controller's own certificate and
// the HTTP servers: the control API, the admin server, the aggregated admin
// API and, when injection is configured, the injector's webhook. The admin
// API's handler is returned too: it follows the front proxy's settings
// while Run serves.
func (c *Controller) servers(ctx context.Context, p *parts) ([]*server, *adminapi.Handler, error) {
	reviews, err := c.reviewClient()
	if err != nil {
		return nil, nil, err
	}
	svc, err := identitysvc.New(identitysvc.Config{
		CA: c.trust.ca.Load(), Reviewer: identitysvc.TokenReviewer{Client: reviews},
		TrustDomain: c.cfg.TrustDomain, TrustRoots: c.trust.Roots, Lifetime: c.cfg.LeafLifetime,
		PodBySourceIP: p.podBySourceIP, Registerer: c.reg, Log: c.log.With("service", "identity"),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := c.renewOwn(); err != nil {
		return nil, nil, fmt.Errorf("issue the controller's own certificate: %w", err)
	}
	// Streams end with ctx: Shutdown does not wait for them.
	base := func(net.Listener) context.Context { return ctx }
	control := &http.Server{Handler: c.controlHandler(svc, p.dest, p.inbound), ReadHeaderTimeout: 10 * time.Second, TLSConfig: c.serverTLS(), BaseContext: base,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	admin := &http.Server{Handler: c.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	// The aggregated admin API (admin.meshctl.io): users' way to the proxies' /tap, /identity, /renew.
	adminAPI, adminAPIServer, err := c.adminAPI(p.dest.Pods(), p.hook)
	if err != nil {
		return nil, nil, err
	}
	adminAPIServer.BaseContext = base
	servers := []*server{
		{name: "control", addr: c.cfg.ControlAddr, srv: control, tls: true},
		{name: "admin", addr: c.cfg.AdminAddr, srv: admin},
		{name: "admin-api", addr: c.cfg.AdminAPIAddr, srv: adminAPIServer, tls: true},
	}
	if c.cfg.Injector.ProxyImage != "" {
		namespaces := p.namespaces.Lister()
		wh := &injector.Webhook{
			Config: c.cfg.Injector,
			NamespaceAnnotations: func(_ context.Context, name string) (map[string]string, error) {
				ns, err := namespaces.Get(name)
				if err != nil {
					return nil, err
				}
				return ns.Annotations, nil
			},
			BeforeInject: p.copier.Ensure,
			Log:          c.log.With("component", "injector"),
		}
		servers = append(servers, &server{name: "webhook", addr: c.cfg.WebhookAddr, srv: p.hook.server(wh, c.log), tls: true})
	}
	return servers, adminAPI, nil
}

// listenAll opens every server's listener; on failure it closes those it
// opened.
func (c *Controller) listenAll(servers []*server) error {
	for _, s := range servers {
		ln, err := c.listen(s.name, s.addr)
		if err != nil {
			for _, o := range servers {
				if o.ln != nil {
					o.ln.Close()
				}
			}
			return fmt.Errorf("%s listener: %w", s.name, err)
		}
		s.ln = ln
	}
	return nil
}

// serve starts the servers and the background work (the admin API's
// front-proxy settings, the controller's own certificate, the trust
// bundle's copies, route status and its election), reports ready, and
// waits for ctx to end or for any of them to stop; then it shuts down.
func (c *Controller) serve(ctx context.Context, cancel context.CancelFunc, p *parts, servers []*server, adminAPI *adminapi.Handler) error {
	g := newGroup(ctx)
	for _, s := range servers {
		g.start(s.name, func() error {
			if s.tls {
				return ignoreClosed(s.srv.ServeTLS(s.ln, "", ""))
			}
			return ignoreClosed(s.srv.Serve(s.ln))
		})
	}
	g.start("admin-api-front-proxy", func() error { return adminAPI.Run(ctx) })
	g.start("own-certificate", func() error { return c.keepOwnCertificate(ctx) })
	g.start("trust-bundle-copies", func() error { return p.copier.Run(ctx) })
	if p.statuses != nil {
		g.start("route-status", func() error { return p.statuses.Run(ctx) })
		g.start("route-status-election", func() error { return p.statusElection.Run(ctx) })
	}
	c.ready.Store(true)
	var attrs []any // control, admin, admin_api: the addresses
	for _, s := range servers {
		if s.name != "webhook" {
			attrs = append(attrs, strings.ReplaceAll(s.name, "-", "_"), s.ln.Addr().String())
		}
	}
	c.log.Info("serving", append(attrs, "webhook", c.cfg.Injector.ProxyImage != "", "spiffe_id", c.cfg.ID().String())...)

	select {
	case <-ctx.Done():
	case <-g.first:
	}
	c.ready.Store(false)
	cancel()
	shutErr := c.shutdown(servers, g)
	return errors.Join(g.err(), shutErr)
}

// shutdown stops the servers gracefully and waits for every goroutine of
// g, all within shutdownTimeout; Run's context has ended.
func (c *Controller) shutdown(servers []*server, g *group) error {
	ctx, done := context.WithTimeout(context.Background(), shutdownTimeout)
	defer done()
	var err error
	for _, s := range servers {
		err = errors.Join(err, s.srv.Shutdown(ctx))
	}
	if werr := g.wait(ctx); werr != nil {
		c.log.Warn("shutdown incomplete", "error", werr)
		err = errors.Join(err, werr)
	}
	return err
}

// the controller's memory grows with.
func (c *Controller) countObjects(resource string, inf cache.SharedIndexInformer) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "controller_cached_objects", Help: "Objects in the controller's informer caches.",
		ConstLabels: prometheus.Labels{"resource": resource},
	}, func() float64 { return float64(len(inf.GetStore().ListKeys())) })
	if err := c.reg.Register(g); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		c.log.Warn("cache metric not registered", "resource", resource, "error", err)
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// sourceIPIndex indexes the pod cache by the pods' own IPs, for issuance.
const sourceIPIndex = "identity-source-ip"

// sourcePods indexes pods by IP and returns the identity service's
// PodBySourceIP: the namespace and ServiceAccount of the pod that holds an
// address now. Finished pods (whose IPs may already be another's) and
// hostNetwork pods (whose address is the node's) hold none; a pod being
// deleted counts only when no other pod has the address.
//
// These are the rules of destination's pod-by-IP index (podByIP), but the
// two are kept apart: issuance looks up the address a connection came from
// (a netip.Addr, an IPv4 client possibly seen as ::ffff:a.b.c.d), so this
// index keys pods by the parsed, unmapped, canonical form of their IPs,
// whereas destination's keys them by the status's strings as written (a
// non-canonical IPv6 spelling would not be found from a connection's
// address), and it exports no lookup. Sharing one index needs destination
// to key by the canonical form and export a lookup by netip.Addr.
func sourcePods(pods cache.SharedIndexInformer) (func(netip.Addr) (string, string, bool), error) {
	err := pods.AddIndexers(cache.Indexers{sourceIPIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return nil, nil
		}
		ips := make([]string, 0, len(p.Status.PodIPs))
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				ips = append(ips, a.Unmap().String())
			}
		}
		return ips, nil
	}})
	if err != nil {
		return nil, err
	}
	return func(ip netip.Addr) (string, string, bool) {
		objs, _ := pods.GetIndexer().ByIndex(sourceIPIndex, ip.Unmap().String())
		var best *corev1.Pod
		for _, o := range objs {
			p, ok := o.(*corev1.Pod)
			if !ok {
				continue
			}
			if best == nil || best.DeletionTimestamp != nil && p.DeletionTimestamp == nil ||
				(best.DeletionTimestamp != nil) == (p.DeletionTimestamp != nil) && p.Namespace+"/"+p.Name < best.Namespace+"/"+best.Name {
				best = p
			}
		}
		if best == nil {
			return "", "", false
		}
		sa := best.Spec.ServiceAccountName
		if sa == "" {
			sa = "default" // what the API server's admission fills in
		}
		return best.Namespace, sa, true
	}, nil
}

// reviewClient is the Kubernetes client TokenReviews are made with: its own
// (from a copy of Config.RestConfig, with ReviewQPS and ReviewBurst), so that
// a burst of issuance neither starves the informers nor waits behind them.
// Without a RestConfig, reviews share Config.Client.
func (c *Controller) reviewClient() (kubernetes.Interface, error) {
	if c.cfg.RestConfig == nil {
		return c.cfg.Client, nil
	}
	rc := rest.CopyConfig(c.cfg.RestConfig)
	rc.QPS, rc.Burst, rc.RateLimiter = ReviewQPS, ReviewBurst, nil
	rc.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("the TokenReview client: %w", err)
	}
	return client, nil
}

func (c *Controller) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("live\n")) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	return mux
}
