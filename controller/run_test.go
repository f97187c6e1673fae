package controller

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// poll calls cond every 20ms until it holds, failing the test after d.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

// TestRunServesAndShutsDownCleanly runs the whole controller in-process on
// a fake API server (the clientset's and the dynamic client's object
// trackers): it becomes ready, answers a destination stream on the control
// API to a workload certificate, leads route status (the gauge says so);
// cancelling its context makes Run return nil within a few seconds with
// every listener closed and the route-status Lease released. Issuance is
// not exercised: its TokenReviews need a real API server.
func TestRunServesAndShutsDownCleanly(t *testing.T) {
	anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots, issuerSecret := trustObjects(t, anchor, issuer)
	roots.Namespace, issuerSecret.Namespace = meshnames.Namespace, meshnames.Namespace
	webhookTLS, _ := webhookSecret(t)
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50", ClusterIPs: []string{"10.96.0.50"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	ready, port, proto := true, int32(8080), corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-a"}}},
	}
	client := fake.NewClientset(roots, issuerSecret, webhookTLS, service, slice,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	// The CRDs are installed: the controller follows policies and routes,
	// and leads route status.
	gv := func(gvr schema.GroupVersionResource) *metav1.APIResourceList {
		return &metav1.APIResourceList{GroupVersion: gvr.GroupVersion().String(), APIResources: []metav1.APIResource{{Name: gvr.Resource, Namespaced: true}}}
	}
	gateway := gv(destination.HTTPRoutes)
	gateway.APIResources = append(gateway.APIResources, gv(destination.GRPCRoutes).APIResources...)
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{gateway, gv(policyapi.GroupVersionResource)}
	// The route-status Lease's release waits at a gate, so that the test
	// can see Run wait for it.
	leases := &gatedLeases{Interface: client, releasing: make(chan struct{}), gate: make(chan struct{})}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		destination.HTTPRoutes: "HTTPRouteList", destination.GRPCRoutes: "GRPCRouteList", policyapi.GroupVersionResource: "AuthorizationPolicyList",
	})

	c, err := New(Config{
		Client: leases, Dynamic: dyn, Identity: "controller-a",
		ControlAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0", AdminAPIAddr: "127.0.0.1:0",
		Injector: podpatch.Config{ProxyImage: "ghcr.io/meshctl/proxy", ProxyVersion: "test"},
		Log:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	addrs := map[string]string{} // by server
	c.listen = func(server, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			mu.Lock()
			addrs[server] = ln.Addr().String()
			mu.Unlock()
		}
		return ln, err
	}
	addr := func(server string) string {
		mu.Lock()
		defer mu.Unlock()
		return addrs[server]
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	plain := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, string) {
		resp, err := plain.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	poll(t, 30*time.Second, "ready on the admin server", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was ready: %v", err)
		default:
		}
		if addr("admin") == "" {
			return false
		}
		code, _ := get("http://" + addr("admin") + "/ready")
		return code == http.StatusOK
	})
	for _, server := range []string{"control", "admin", "admin-api", "webhook"} {
		if addr(server) == "" {
			t.Fatalf("no %s listener", server)
		}
	}

	// A destination stream, with a workload certificate, to the controller
	// proving its own SPIFFE ID.
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	cert := leafFrom(t, issuer, web, -time.Minute, time.Hour)
	proxy := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, // checked below: the chain to the anchor and the controller's SPIFFE ID
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(anchor.Cert)
			for _, pc := range cs.PeerCertificates[1:] {
				inter.AddCert(pc)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != c.cfg.ID().String() {
				return fmt.Errorf("the controller proved %v, want %s", leaf.URIs, c.cfg.ID())
			}
			return nil
		},
	}}}
	defer proxy.CloseIdleConnections()
	streamCtx, endStream := context.WithCancel(ctx)
	defer endStream()
	req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, "https://"+addr("control")+api.DestinationsPath+"?target=web.shop.svc.cluster.local:80", nil)
	resp, err := proxy.Do(req)
	if err != nil {
		t.Fatalf("destination stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("destination stream: %s: %s", resp.Status, body)
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	if err != nil {
		t.Fatalf("destination stream: %v", err)
	}
	var d api.Destination
	if err := json.Unmarshal(line, &d); err != nil {
		t.Fatalf("destination stream: %v: %s", err, line)
	}
	if !d.Known || d.Service != "web.shop" || len(d.Endpoints) != 1 || d.Endpoints[0].Addr != "10.244.0.10:8080" {
		t.Errorf("destination of web.shop:80: %+v, want web.shop with 10.244.0.10:8080", d)
	}

	// Done with the stream: the connection is idle when Run shuts down.
	endStream()
	resp.Body.Close()
	proxy.CloseIdleConnections()

	// Route status is led, and the gauge says so.
	wantGauge := `controller_leader{lease="` + meshnames.RouteStatusLease + `"} 1`
	poll(t, 20*time.Second, "leading route status ("+wantGauge+" on /metrics)", func() bool {
		_, metrics := get("http://" + addr("admin") + "/metrics")
		return strings.Contains(metrics, wantGauge)
	})

	cancel()
	select {
	case <-leases.releasing:
	case <-time.After(10 * time.Second):
		t.Fatal("the route-status Lease was not released after cancel")
	}
	// Run does not return while the Lease is being released: watched for
	// two seconds, longer than the rest of the shutdown takes (the control
	// server's Shutdown may wait out HTTP/2's one-second grace after
	// GOAWAY).
	waitWhile := time.Now().Add(2 * time.Second)
	for time.Now().Before(waitWhile) {
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) while the route-status Lease was being released", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	close(leases.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	for _, server := range []string{"control", "admin", "admin-api", "webhook"} {
		if conn, err := net.DialTimeout("tcp", addr(server), time.Second); err == nil {
			conn.Close()
			t.Errorf("the %s listener (%s) is still open after Run returned", server, addr(server))
		}
	}
	if c.ready.Load() {
		t.Error("still ready after Run returned")
	}
	lease, err := client.CoordinationV1().Leases(meshnames.Namespace).Get(context.Background(), meshnames.RouteStatusLease, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the route-status Lease: %v", err)
	}
	if h := leaseHolder(lease); h != "" {
		t.Errorf("the route-status Lease is still held by %q after Run returned; want it released", h)
	}
}

func leaseHolder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// gatedLeases is a clientset whose Lease updates that release a Lease
// (no holder) wait until gate is closed; releasing is closed at the first.
type gatedLeases struct {
	kubernetes.Interface
	releasing, gate chan struct{}
	once            sync.Once
}

// IsWatchListSemanticsUnSupported tells the informers, as the fake
// clientset does, to list and watch rather than stream a list.
func (g *gatedLeases) IsWatchListSemanticsUnSupported() bool { return true }

func (g *gatedLeases) CoordinationV1() coordinationclient.CoordinationV1Interface {
	return gatedCoordination{g.Interface.CoordinationV1(), g}
}

type gatedCoordination struct {
	coordinationclient.CoordinationV1Interface
	g *gatedLeases
}

func (c gatedCoordination) Leases(namespace string) coordinationclient.LeaseInterface {
	return gatedLeaseClient{c.CoordinationV1Interface.Leases(namespace), c.g}
}

type gatedLeaseClient struct {
	coordinationclient.LeaseInterface
	g *gatedLeases
}

func (l gatedLeaseClient) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if leaseHolder(lease) == "" {
		l.g.once.Do(func() { close(l.g.releasing) })
		select {
		case <-l.g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.LeaseInterface.Update(ctx, lease, opts)
}

// TestTheGroupWaitsForEveryGoroutineOrNamesThoseLeft: the first to return
// is signalled; every error is kept; wait returns nil once all have
// returned, and names those still running when its context ends.
func TestTheGroupWaitsForEveryGoroutineOrNamesThoseLeft(t *testing.T) {
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	g := newGroup(runCtx)
	stop, stuck := make(chan struct{}), make(chan struct{})
	defer close(stuck)
	g.start("fails", func() error { return errors.New("boom") })
	g.start("stops", func() error { <-stop; return errors.New("bang") })
	g.start("stuck", func() error { <-stuck; return nil })
	<-g.first
	if err := g.err(); err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v after the first returned, want boom", err)
	}
	stopRun()
	close(stop)
	poll(t, 5*time.Second, "stops returned", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		_, running := g.running["stops"]
		return !running
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.wait(ctx); err == nil || !strings.Contains(err.Error(), "stuck") || strings.Contains(err.Error(), "stops") {
		t.Errorf("wait = %v, want an error naming stuck alone", err)
	}
	if err := g.err(); err == nil || err.Error() != "boom\nbang" {
		t.Errorf("err = %v, want boom and then the later bang, both kept", err)
	}

	// Asked to stop, nil and the context's error are clean returns.
	runCtx, stopRun = context.WithCancel(context.Background())
	g = newGroup(runCtx)
	release := make(chan struct{})
	g.start("a", func() error { <-release; return nil })
	g.start("b", func() error { <-release; return runCtx.Err() })
	stopRun()
	close(release)
	if err := g.wait(context.Background()); err != nil {
		t.Errorf("wait = %v once all returned", err)
	}
	if err := g.err(); err != nil {
		t.Errorf("err = %v, want nil: both stopped as asked", err)
	}
}

// TestAnEarlyNilReturnIsAnError: a goroutine returning nil before Run's
// context ends stopped unasked; the error names it.
func TestAnEarlyNilReturnIsAnError(t *testing.T) {
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	g := newGroup(runCtx)
	g.start("trust-bundle-copies", func() error { return nil })
	<-g.first
	want := "trust-bundle-copies stopped before the controller was asked to"
	if err := g.err(); err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
