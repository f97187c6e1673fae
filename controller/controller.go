package controller

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/controller/identitysvc"
	"github.com/meshctl/meshctl/controller/inbound"
	"github.com/meshctl/meshctl/controller/injector"
	"github.com/meshctl/meshctl/controller/leader"
	"github.com/meshctl/meshctl/controller/routestatus"
	"github.com/meshctl/meshctl/controller/trustbundle"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
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

// Controller is a running mesh-controller.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	trust *trust
	reg   *prometheus.Registry
	key   crypto.Signer
	own   atomic.Pointer[tls.Certificate]
	ready atomic.Bool
	// ControlAddr and AdminAddr are set once listening (tests use port 0).
	controlLn, adminLn, webhookLn net.Listener
	listening                     chan struct{}
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
	c := &Controller{cfg: cfg, log: cfg.Log.With("component", "controller"), reg: prometheus.NewRegistry(), key: key, listening: make(chan struct{})}
	c.trust = &trust{ns: cfg.Namespace, changed: make(chan struct{}, 1), log: func(msg string, args ...any) { c.log.Info(msg, args...) }}
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return c, nil
}

// Addrs returns the control API's and the admin server's addresses once listening.
func (c *Controller) Addrs(ctx context.Context) (control, admin string, err error) {
	select {
	case <-c.listening:
		return c.controlLn.Addr().String(), c.adminLn.Addr().String(), nil
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// WebhookAddr returns the webhook's address once listening ("" without a webhook).
func (c *Controller) WebhookAddr(ctx context.Context) (string, error) {
	select {
	case <-c.listening:
		if c.webhookLn == nil {
			return "", nil
		}
		return c.webhookLn.Addr().String(), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Run serves until ctx ends, then shuts down within a few seconds.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The control plane's own Secrets and ConfigMaps.
	own := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 10*time.Minute, informers.WithNamespace(c.cfg.Namespace))
	defer own.Shutdown()
	hook := &webhookCert{log: c.log.With("component", "webhook")}
	if err := hook.watch(own); err != nil {
		return err
	}
	if err := c.trust.watch(ctx, own, 2*time.Minute); err != nil {
		return err
	}
	// Services, EndpointSlices, Pods and Namespaces everywhere, slimmed.
	cluster := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 10*time.Minute, informers.WithTransform(slim))
	defer cluster.Shutdown()
	dest, err := destination.New(cluster, c.cfg.TrustDomain, c.cfg.ClusterDomain)
	if err != nil {
		return err
	}
	namespaces := cluster.Core().V1().Namespaces()
	nsInformer := namespaces.Informer()
	// The trust bundle's copies in meshed namespaces.
	copies := trustbundle.NewFactory(c.cfg.Client, meshnames.TrustRootsConfigMap, 10*time.Minute)
	defer copies.Shutdown()
	copier, err := trustbundle.New(c.cfg.Client, copies, c.cfg.Namespace, meshnames.TrustRootsConfigMap, c.log.With("component", "trust-bundle-copies"))
	if err != nil {
		return err
	}
	// Custom resources: AuthorizationPolicies (and HTTPRoutes), when the
	// controller can read them.
	var policies cache.SharedIndexInformer
	custom := dynamicinformer.NewDynamicSharedInformerFactory(nilDynamic(c.cfg.Dynamic), 10*time.Minute)
	defer custom.Shutdown()
	synced := []cache.InformerSynced{dest.Synced, nsInformer.HasSynced, copier.Synced}
	if c.cfg.Dynamic != nil && c.served(policyapi.GroupVersionResource) {
		policies = custom.ForResource(policyapi.GroupVersionResource).Informer()
		synced = append(synced, policies.HasSynced)
	}
	var httpRoutes, grpcRoutes cache.SharedIndexInformer
	if c.cfg.Dynamic != nil && c.served(destination.HTTPRoutes) {
		httpRoutes = custom.ForResource(destination.HTTPRoutes).Informer()
		if err := dest.WithRoutes(httpRoutes); err != nil {
			return err
		}
		synced = append(synced, httpRoutes.HasSynced)
	}
	if c.cfg.Dynamic != nil && c.served(destination.GRPCRoutes) {
		grpcRoutes = custom.ForResource(destination.GRPCRoutes).Informer()
		if err := dest.WithGRPCRoutes(grpcRoutes); err != nil {
			return err
		}
		synced = append(synced, grpcRoutes.HasSynced)
	}
	// Route status (Accepted, ResolvedRefs) for the routes attached to
	// Services, written by the one replica that holds the Lease
	// RouteStatusLease: two versions during a rollout never fight over a
	// route's conditions.
	var statuses *routestatus.Writer
	var statusElection *leader.Election
	if httpRoutes != nil || grpcRoutes != nil {
		statusElection = &leader.Election{Client: c.cfg.Client, Namespace: c.cfg.Namespace, Name: meshnames.RouteStatusLease,
			Identity: c.cfg.Identity, Log: c.log.With("component", "route-status")}
		if statuses, err = routestatus.New(routestatus.Config{
			Client: c.cfg.Dynamic, HTTPRoutes: httpRoutes, GRPCRoutes: grpcRoutes, Services: dest.Services(),
			Leading: statusElection.Leading, Log: c.log.With("component", "route-status"),
		}); err != nil {
			return err
		}
		statusElection.OnLead = statuses.Resync
	}
	inboundPolicies, err := inbound.New(inbound.Config{
		Pods: dest.Pods(), Namespaces: nsInformer, Policies: policies,
		TrustDomain: c.cfg.TrustDomain, Default: c.cfg.DefaultInboundPolicy, Log: c.log.With("service", "inbound-policy"),
	})
	if err != nil {
		return err
	}
	podBySourceIP, err := sourcePods(dest.Pods())
	if err != nil {
		return err
	}
	for name, inf := range map[string]cache.SharedIndexInformer{
		"services": dest.Services(), "endpointslices": dest.EndpointSlices(), "pods": dest.Pods(), "namespaces": nsInformer,
	} {
		c.countObjects(name, inf)
	}
	cluster.Start(ctx.Done())
	copies.Start(ctx.Done())
	if c.cfg.Dynamic != nil {
		custom.Start(ctx.Done())
	}
	syncCtx, syncDone := context.WithTimeout(ctx, 2*time.Minute)
	ok := cache.WaitForCacheSync(syncCtx.Done(), synced...)
	syncDone()
	if !ok {
		return errors.New("the Service, EndpointSlice, Pod, Namespace, ConfigMap and AuthorizationPolicy caches did not sync (is the controller allowed to list and watch them, and are the CRDs installed?)")
	}

	reviews, err := c.reviewClient()
	if err != nil {
		return err
	}
	svc, err := identitysvc.New(identitysvc.Config{
		CA: c.trust.ca.Load(), Reviewer: identitysvc.TokenReviewer{Client: reviews},
		TrustDomain: c.cfg.TrustDomain, TrustRoots: c.trust.Roots, Lifetime: c.cfg.LeafLifetime,
		PodBySourceIP: podBySourceIP, Registerer: c.reg, Log: c.log.With("service", "identity"),
	})
	if err != nil {
		return err
	}
	if err := c.renewOwn(); err != nil {
		return fmt.Errorf("issue the controller's own certificate: %w", err)
	}

	// Streams end with ctx: Shutdown does not wait for them.
	base := func(net.Listener) context.Context { return ctx }
	control := &http.Server{Handler: c.controlHandler(svc, dest, inboundPolicies), ReadHeaderTimeout: 10 * time.Second, TLSConfig: c.serverTLS(), BaseContext: base,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	admin := &http.Server{Handler: c.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	servers := []*http.Server{control, admin}
	if c.controlLn, err = net.Listen("tcp", c.cfg.ControlAddr); err != nil {
		return fmt.Errorf("control API listener: %w", err)
	}
	if c.adminLn, err = net.Listen("tcp", c.cfg.AdminAddr); err != nil {
		c.controlLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	errc := make(chan error, 16)
	// The aggregated admin API (admin.meshctl.io): users' way to the proxies' /tap, /identity, /renew.
	adminAPI, adminAPIServer, err := c.adminAPI(dest.Pods(), hook)
	if err != nil {
		c.controlLn.Close()
		c.adminLn.Close()
		return err
	}
	adminAPIServer.BaseContext = base
	adminAPILn, err := net.Listen("tcp", c.cfg.AdminAPIAddr)
	if err != nil {
		c.controlLn.Close()
		c.adminLn.Close()
		return fmt.Errorf("admin API listener: %w", err)
	}
	servers = append(servers, adminAPIServer)
	go func() { errc <- ignoreClosed(adminAPIServer.ServeTLS(adminAPILn, "", "")) }()
	go func() { errc <- adminAPI.Run(ctx) }()
	if c.cfg.Injector.ProxyImage != "" {
		wh := &injector.Webhook{
			Config: c.cfg.Injector,
			NamespaceAnnotations: func(_ context.Context, name string) (map[string]string, error) {
				ns, err := namespaces.Lister().Get(name)
				if err != nil {
					return nil, err
				}
				return ns.Annotations, nil
			},
			BeforeInject: copier.Ensure,
			Log:          c.log.With("component", "injector"),
		}
		webhook := hook.server(wh, c.log)
		webhookLn, err := net.Listen("tcp", c.cfg.WebhookAddr)
		if err != nil {
			c.controlLn.Close()
			c.adminLn.Close()
			_ = adminAPIServer.Close()
			return fmt.Errorf("webhook listener: %w", err)
		}
		c.webhookLn = webhookLn
		servers = append(servers, webhook)
		go func() { errc <- ignoreClosed(webhook.ServeTLS(webhookLn, "", "")) }()
	}
	close(c.listening)
	go func() { errc <- ignoreClosed(control.ServeTLS(c.controlLn, "", "")) }()
	go func() { errc <- ignoreClosed(admin.Serve(c.adminLn)) }()
	go func() { errc <- c.keepOwnCertificate(ctx) }()
	go func() { errc <- copier.Run(ctx) }()
	if statuses != nil {
		go func() { errc <- statuses.Run(ctx) }()
		go func() { errc <- statusElection.Run(ctx) }()
	}
	c.ready.Store(true)
	c.log.Info("serving", "control", c.controlLn.Addr().String(), "admin", c.adminLn.Addr().String(), "admin_api", adminAPILn.Addr().String(),
		"webhook", c.cfg.Injector.ProxyImage != "", "spiffe_id", c.cfg.ID().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	c.ready.Store(false)
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, s := range servers {
		runErr = errors.Join(runErr, s.Shutdown(shutdown))
	}
	return runErr
}

// countObjects exports how many objects an informer caches, which is what
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

// renewOwn issues the controller's serving certificate from the current issuer.
func (c *Controller) renewOwn() error {
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{c.cfg.ID().URL()}}, c.key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return err
	}
	chain, err := c.trust.ca.Load().Sign(csr, c.cfg.ID(), c.cfg.LeafLifetime)
	if err != nil {
		return err
	}
	cert := &tls.Certificate{PrivateKey: c.key, Leaf: chain[0]}
	for _, ch := range chain {
		cert.Certificate = append(cert.Certificate, ch.Raw)
	}
	c.own.Store(cert)
	return nil
}

// keepOwnCertificate renews the serving certificate at 70% of its life, and
// at once when the issuer or the bundle changes.
func (c *Controller) keepOwnCertificate(ctx context.Context) error {
	for {
		leaf := c.own.Load().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		t := time.NewTimer(time.Until(leaf.NotBefore.Add(life * 7 / 10)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-c.trust.changed:
			t.Stop()
		}
		if err := c.renewOwn(); err != nil {
			c.log.Error("could not renew the controller's certificate", "error", err)
			continue
		}
		c.log.Info("controller certificate renewed", "issuer", c.own.Load().Leaf.Issuer.CommonName)
	}
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

// controlHandler routes the control API: certificate issuance is
// authenticated by the ServiceAccount token alone; every other /v1/ path
// needs a client certificate valid now.
func (c *Controller) controlHandler(issue, destinations, inboundPolicy http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(api.CertificatePath, issue)
	mux.Handle(api.DestinationsPath, c.requireClientCert(destinations))
	mux.Handle(api.InboundPolicyPath, c.requireClientCert(inboundPolicy))
	mux.Handle("/v1/", c.requireClientCert(http.NotFoundHandler()))
	return mux
}

// serverTLS serves the control API: TLS 1.3, the controller's own
// certificate, and client certificates requested but never checked in the
// handshake: a proxy whose certificate expired (a controller outage longer
// than a certificate's life) must still reach /v1/certificate, where the
// token alone authenticates. requireClientCert checks the certificate per
// request on every other path. (crypto/tls still verifies that the client
// holds the certificate's key.)
func (c *Controller) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.own.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
	}
}

// requireClientCert lets through only callers whose client certificate
// chains to the current trust bundle now, with a SPIFFE ID; others get 401.
// The chain is verified per request, not per connection: roots change and
// certificates expire while HTTP/2 connections live on.
func (c *Controller) requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(reason, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(api.Error{Error: msg, Reason: reason})
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			fail("no_client_certificate", "a workload client certificate is required")
			return
		}
		raw := make([][]byte, len(r.TLS.PeerCertificates))
		for i, pc := range r.TLS.PeerCertificates {
			raw[i] = pc.Raw
		}
		if _, err := certs.VerifyChain(raw, c.trust.roots.Load(), time.Now()); err != nil {
			fail("bad_client_certificate", "the client certificate is not valid (renew it on "+api.CertificatePath+"): "+err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
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
