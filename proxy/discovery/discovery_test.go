package discovery

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

const (
	controllerID = "spiffe://cluster.local/ns/meshctl/sa/mesh-controller"
	workloadID   = "spiffe://cluster.local/ns/demo/sa/client"
	webID        = "spiffe://cluster.local/ns/demo/sa/web"
)

type source struct{ b *certs.Bundle }

func (s source) Bundle() *certs.Bundle { return s.b }

func bundle(t *testing.T, root, issuer *testpki.CA, id string) *certs.Bundle {
	t.Helper()
	leaf := issuer.Issue(t, id, -time.Minute, time.Hour)
	b, err := certs.NewBundle(leaf.CertPEM(), leaf.KeyPEM(t), testpki.CertPEM(root.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeController serves /v1/destinations from a table the test changes.
type fakeController struct {
	srv *httptest.Server

	mu      sync.Mutex
	dests   map[string]api.Destination
	changed chan struct{}   // closed and replaced on every change
	callers []string        // the client certificates' SPIFFE IDs
	hold    chan struct{}   // when set, streams wait for it to close before answering
	refuse  map[string]bool // targets answered 400
}

func newFakeController(t *testing.T, b *certs.Bundle) *fakeController {
	t.Helper()
	fc := &fakeController{dests: map[string]api.Destination{}, changed: make(chan struct{})}
	fc.srv = httptest.NewUnstartedServer(http.HandlerFunc(fc.serve))
	fc.srv.EnableHTTP2 = true
	fc.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*b.Certificate},
		ClientAuth:   tls.RequireAnyClientCert,
	}
	fc.srv.StartTLS()
	t.Cleanup(fc.srv.Close)
	return fc
}

func (fc *fakeController) set(target string, d api.Destination) {
	fc.mu.Lock()
	fc.dests[target] = d
	close(fc.changed)
	fc.changed = make(chan struct{})
	fc.mu.Unlock()
}

func (fc *fakeController) serve(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	fc.mu.Lock()
	refused := fc.refuse[target]
	fc.mu.Unlock()
	if _, err := netip.ParseAddrPort(target); err != nil || r.URL.Path != api.DestinationsPath || refused {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(api.Error{Error: "bad target", Reason: "bad_target"})
		return
	}
	id, _ := spiffeid.FromCertificate(r.TLS.PeerCertificates[0])
	fc.mu.Lock()
	fc.callers = append(fc.callers, id.String())
	fc.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	fc.mu.Lock()
	hold := fc.hold
	fc.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	enc := json.NewEncoder(w)
	for {
		fc.mu.Lock()
		d, ok := fc.dests[target]
		changed := fc.changed
		fc.mu.Unlock()
		if !ok {
			d = api.Destination{Known: false}
		}
		if enc.Encode(d) != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

// clusterNetworks are the test cluster's: 10.0.0.0/8, as in a pod.
var clusterNetworks = endpoints.Networks{netip.MustParsePrefix("10.0.0.0/8")}

type fixture struct {
	root, issuer *testpki.CA
	workload     *certs.Bundle
	controller   *fakeController
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := testpki.NewRoot(t, "root")
	issuer := root.NewIssuer(t, "issuer")
	return &fixture{
		root: root, issuer: issuer,
		workload:   bundle(t, root, issuer, workloadID),
		controller: newFakeController(t, bundle(t, root, issuer, controllerID)),
	}
}

func (f *fixture) client(t *testing.T, addr string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Addr: addr, ControllerID: mustID(t, controllerID), Identity: source{f.workload},
		MaxBackoff: 200 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
		ClusterNetworks: clusterNetworks,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return c
}

func addrs(s *endpoints.Set) []string {
	var out []string
	for _, e := range s.Endpoints() {
		out = append(out, e.Addr)
	}
	slices.Sort(out)
	return out
}

// eventually waits for cond, failing after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResolveFollowsTheControllersUpdates(t *testing.T) {
	f := newFixture(t)
	svc := netip.MustParseAddrPort("10.96.0.20:80")
	f.controller.set(svc.String(), api.Destination{Known: true, Service: "web.demo", Endpoints: []api.Endpoint{
		{Addr: "10.244.0.7:8080", Identity: webID}, {Addr: "10.244.0.8:8080", Identity: webID},
	}})
	c := f.client(t, f.controller.srv.Listener.Addr().String(), nil)

	set := c.Resolve(context.Background(), svc)
	if got := addrs(set); !slices.Equal(got, []string{"10.244.0.7:8080", "10.244.0.8:8080"}) {
		t.Fatalf("first resolve = %v, want the two web endpoints", got)
	}
	if set.Identity().String() != webID {
		t.Errorf("identity = %v, want %s", set.Identity(), webID)
	}
	if c.Resolve(context.Background(), svc) != set {
		t.Error("a second resolve made a new set instead of using the cached one")
	}

	if set.Name() != "web.demo:80" || set.Policy().Retry.Enabled() {
		t.Errorf("name %q, policy %+v: want the Service's name and no policy", set.Name(), set.Policy())
	}
	// The Service's traffic-policy annotations become the set's policy; a
	// bad value is left out (and logged), the rest kept.
	f.controller.set(svc.String(), api.Destination{Known: true, Service: "web.demo", Endpoints: []api.Endpoint{
		{Addr: "10.244.0.7:8080", Identity: webID}, {Addr: "10.244.0.8:8080", Identity: webID},
	}, Annotations: map[string]string{"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "lots", "timeout.meshctl.io/request": "2s"}})
	eventually(t, "the policy", func() bool { return set.Policy().Retry.Enabled() })
	if p := set.Policy(); p.Retry.Limit != 1 || p.RequestTimeout != 2*time.Second || set.Budget() == nil {
		t.Errorf("policy %+v, budget %v: want 5xx retried once, a 2s timeout, a budget", p, set.Budget())
	}

	// Scale to one endpoint: the same set follows.
	f.controller.set(svc.String(), api.Destination{Known: true, Service: "web.demo", Endpoints: []api.Endpoint{
		{Addr: "10.244.0.9:8080", Identity: webID},
	}})
	eventually(t, "the update", func() bool { return slices.Equal(addrs(set), []string{"10.244.0.9:8080"}) })

	// Scale to zero: no endpoint to pick.
	f.controller.set(svc.String(), api.Destination{Known: true, Service: "web.demo"})
	eventually(t, "the empty update", func() bool { _, ok := set.Pick(); return !ok })

	f.controller.mu.Lock()
	defer f.controller.mu.Unlock()
	if len(f.controller.callers) == 0 || f.controller.callers[0] != workloadID {
		t.Errorf("the controller saw callers %v, want the workload's certificate %s", f.controller.callers, workloadID)
	}
}

func TestUnknownDestinationsGoAsTheyAre(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, f.controller.srv.Listener.Addr().String(), nil)
	dst := netip.MustParseAddrPort("93.184.216.34:443")
	ep, ok := c.Resolve(context.Background(), dst).Pick()
	if !ok || ep.Addr != dst.String() || ep.Meshed() {
		t.Errorf("unknown destination resolved to %+v, want itself unmeshed", ep)
	}
}

func TestKeepsWhatItKnewWhileTheControllerIsAway(t *testing.T) {
	f := newFixture(t)
	svc := netip.MustParseAddrPort("10.96.0.21:80")
	f.controller.set(svc.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.0.7:8080", Identity: webID}}})

	// A forwarder in front of the controller lets the test cut connections
	// and bring the controller back with new state.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwd := newForwarder(t, ln, f.controller.srv.Listener.Addr().String())
	c := f.client(t, ln.Addr().String(), nil)
	set := c.Resolve(context.Background(), svc)
	if got := addrs(set); !slices.Equal(got, []string{"10.244.0.7:8080"}) {
		t.Fatalf("resolve = %v", got)
	}

	fwd.pause(true) // the controller is unreachable; connections cut
	eventually(t, "the client to notice", c.down.Load)
	if got := addrs(set); !slices.Equal(got, []string{"10.244.0.7:8080"}) {
		t.Fatalf("while the controller is away the set became %v, want what it knew", got)
	}
	// A new destination does not wait for an answer that cannot come; one
	// inside the cluster fails closed (no endpoint, never plaintext), one
	// outside goes as it is.
	start := time.Now()
	inside := netip.MustParseAddrPort("10.96.0.22:80")
	other := c.Resolve(context.Background(), inside)
	if ep, ok := other.Pick(); ok {
		t.Errorf("a new destination in the cluster while away resolved to %+v; want no endpoint until the controller answers", ep)
	}
	outside := netip.MustParseAddrPort("198.51.100.9:80")
	if ep, _ := c.Resolve(context.Background(), outside).Pick(); ep.Addr != outside.String() || ep.Meshed() {
		t.Errorf("a destination outside the cluster while away resolved to %+v, want itself", ep)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("resolving while the controller is away took %v; it should not wait for it", d)
	}
	f.controller.set(inside.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.0.31:8080", Identity: webID}}})

	// Meanwhile the endpoints changed; the reconnected stream brings a full snapshot.
	f.controller.set(svc.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.0.30:8080", Identity: webID}}})
	fwd.pause(false)
	eventually(t, "the snapshot after reconnecting", func() bool { return slices.Equal(addrs(set), []string{"10.244.0.30:8080"}) })
	eventually(t, "the destination first seen while away", func() bool {
		ep, ok := other.Pick()
		return ok && ep.Addr == "10.244.0.31:8080" && ep.Meshed()
	})
}

func TestRefusesAControllerWithTheWrongIdentity(t *testing.T) {
	f := newFixture(t)
	impostor := newFakeController(t, bundle(t, f.root, f.issuer, "spiffe://cluster.local/ns/demo/sa/impostor"))
	svc := netip.MustParseAddrPort("10.96.0.23:80")
	impostor.set(svc.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.6.6:80"}}})
	c := f.client(t, impostor.srv.Listener.Addr().String(), func(c *Config) { c.FirstAnswer = 200 * time.Millisecond })
	// Inside the cluster: nothing to send to, rather than plaintext to the
	// destination; a request waits for its queue timeout and fails.
	set := c.Resolve(context.Background(), svc)
	if ep, ok := set.Pick(); ok {
		t.Errorf("resolved through an impostor to %+v; want no endpoint (fail closed)", ep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if l, err := set.Acquire(ctx, endpoints.Queue{Timeout: 300 * time.Millisecond, Capacity: 10}, ""); err == nil {
		t.Errorf("a request got endpoint %+v; want it to fail", l.Endpoint)
	}
	// Outside the cluster's networks it goes as it is.
	outside := netip.MustParseAddrPort("198.51.100.23:80")
	impostor.set(outside.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.6.6:80"}}})
	if ep, _ := c.Resolve(context.Background(), outside).Pick(); ep.Addr != outside.String() {
		t.Errorf("resolved through an impostor to %s, want the destination itself", ep.Addr)
	}
}

func TestASlowControllerDelaysRequestsAndNeverMakesThemPlaintext(t *testing.T) {
	f := newFixture(t)
	svc := netip.MustParseAddrPort("10.96.0.24:80")
	c := f.client(t, f.controller.srv.Listener.Addr().String(), func(c *Config) { c.FirstAnswer = 100 * time.Millisecond })
	hold := make(chan struct{})
	f.controller.mu.Lock()
	f.controller.hold = hold // the controller is slow to answer
	f.controller.mu.Unlock()
	f.controller.set(svc.String(), api.Destination{Known: true, Endpoints: []api.Endpoint{{Addr: "10.244.0.40:8080", Identity: webID}}})
	set := c.Resolve(context.Background(), svc)
	if ep, ok := set.Pick(); ok {
		t.Fatalf("before the controller answered the destination resolved to %+v; want no endpoint", ep)
	}
	got := make(chan endpoints.Lease, 1)
	go func() {
		l, err := set.Acquire(context.Background(), endpoints.Queue{Timeout: 5 * time.Second, Capacity: 10}, "")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(1200 * time.Millisecond) // longer than FirstAnswer: once, plaintext went out here
	select {
	case l := <-got:
		t.Fatalf("a request went to %+v before the controller answered", l.Endpoint)
	default:
	}
	close(hold)
	l := <-got
	if l.Addr != "10.244.0.40:8080" || !l.Meshed() {
		t.Errorf("the waiting request went to %+v, want the meshed endpoint", l.Endpoint)
	}
}

func TestAnInClusterDestinationOutsideTheMeshGoesAsItIs(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, f.controller.srv.Listener.Addr().String(), nil)
	node := netip.MustParseAddrPort("10.199.0.1:10250") // the controller says: no pod or Service
	ep, ok := c.Resolve(context.Background(), node).Pick()
	if !ok || ep.Addr != node.String() || ep.Meshed() {
		t.Errorf("a destination the controller calls unknown resolved to %+v, ok=%v; want itself", ep, ok)
	}
}

func TestEvictionStopsTheSubscription(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, f.controller.srv.Listener.Addr().String(), func(c *Config) { c.CacheSize = 2 })
	for i := range 5 {
		c.Resolve(context.Background(), netip.AddrPortFrom(netip.MustParseAddr("10.96.1.1"), uint16(80+i)))
	}
	if n := c.cache.Len(); n != 2 {
		t.Errorf("cache holds %d destinations, want 2", n)
	}
	// Run's end waits for every subscription: a leaked one would hang the cleanup.
}

func TestTranslate(t *testing.T) {
	dst := netip.MustParseAddrPort("10.96.0.20:80")
	log := slog.New(slog.DiscardHandler)
	got, known := Translate(dst, api.Destination{Known: true, Endpoints: []api.Endpoint{
		{Addr: "10.244.0.7:8080", Identity: webID, Opaque: true, Workload: "web"},
		{Addr: "10.244.0.8:8080"},
		{Addr: "10.244.0.9:8080", Identity: "spiffe://nope/with space"},
		{Addr: "not-an-address"},
	}}, log)
	want := []endpoints.Endpoint{
		{Addr: "10.244.0.7:8080", Identity: mustID(t, webID), Opaque: true, Workload: "web"},
		{Addr: "10.244.0.8:8080"},
	}
	if !slices.Equal(got, want) || !known {
		t.Errorf("Translate = %+v, %v, want %+v", got, known, want)
	}
	if got, known := Translate(dst, api.Destination{Known: false}, log); known || !slices.Equal(got, []endpoints.Endpoint{{Addr: dst.String()}}) {
		t.Errorf("Translate(unknown) = %+v, want the destination itself", got)
	}
	if got, _ := Translate(dst, api.Destination{Known: true}, log); len(got) != 0 {
		t.Errorf("Translate(no endpoints) = %+v, want none", got)
	}
}

func mustID(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// forwarder relays TCP connections to a target; paused, it cuts every
// connection and refuses new ones, as an unreachable controller would.
type forwarder struct {
	target string

	mu     sync.Mutex
	paused bool
	conns  map[net.Conn]struct{}
}

func newForwarder(t *testing.T, ln net.Listener, target string) *forwarder {
	t.Helper()
	f := &forwarder{target: target, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.pause(true)
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.relay(c)
			}()
		}
	}()
	return f
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *forwarder) relay(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

func (f *forwarder) pause(p bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = p
	if p {
		for c := range f.conns {
			c.Close()
		}
		clear(f.conns)
	}
}

func TestARefusalInsideTheClusterFailsClosed(t *testing.T) {
	f := newFixture(t)
	inside, outside := netip.MustParseAddrPort("10.96.0.25:80"), netip.MustParseAddrPort("198.51.100.25:80")
	f.controller.mu.Lock()
	f.controller.refuse = map[string]bool{inside.String(): true, outside.String(): true}
	f.controller.mu.Unlock()
	c := f.client(t, f.controller.srv.Listener.Addr().String(), nil)
	set := c.Resolve(context.Background(), inside)
	eventually(t, "the refusal", func() bool {
		c.mu.Lock()
		sub, _ := c.cache.Get(inside)
		c.mu.Unlock()
		select {
		case <-sub.answered:
			return true
		default:
			return false
		}
	})
	if ep, ok := set.Pick(); ok {
		t.Errorf("a destination in the cluster the controller refused resolved to %+v; want none", ep)
	}
	eventually(t, "the destination outside to go as it is", func() bool {
		ep, ok := c.Resolve(context.Background(), outside).Pick()
		return ok && ep.Addr == outside.String()
	})
}

func TestTranslateRoutesPicksTheClientsGroup(t *testing.T) {
	dst := netip.MustParseAddrPort("10.96.0.1:80")
	route := func(name, consumer string) api.Route {
		return api.Route{Name: name, Consumer: consumer, Backends: []api.Backend{{Service: "web.shop:80", Weight: 1, Endpoints: []api.Endpoint{{Addr: "10.0.0.1:8080"}}}},
			Mirrors: []api.Mirror{{Backend: api.Backend{Service: "mirror.shop:80", Endpoints: []api.Endpoint{{Addr: "10.0.0.2:8080"}}}, PerMillion: 500}}}
	}
	routes := []api.Route{route("shop/producer", ""), route("team-a/consumer", "team-a"), route("team-b/consumer", "team-b"), route("shop/producer-2", "")}
	names := func(specs []endpoints.RouteSpec) []string {
		var out []string
		for _, s := range specs {
			out = append(out, s.Name)
		}
		return out
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		namespace string
		want      []string
	}{
		{"team-a", []string{"team-a/consumer"}},
		{"team-b", []string{"team-b/consumer"}},
		{"shop", []string{"shop/producer", "shop/producer-2"}},
		{"", []string{"shop/producer", "shop/producer-2"}},
	} {
		got := TranslateRoutes(dst, routes, tc.namespace, log)
		if !slices.Equal(names(got), tc.want) {
			t.Errorf("client in %q gets %v, want %v", tc.namespace, names(got), tc.want)
		}
		if len(got) > 0 && (len(got[0].Mirrors) != 1 || got[0].Mirrors[0].PerMillion != 500 || len(got[0].Mirrors[0].Backend.Endpoints) != 1) {
			t.Errorf("mirrors not translated: %+v", got[0].Mirrors)
		}
	}
	if got := TranslateRoutes(dst, []api.Route{route("team-a/consumer", "team-a")}, "shop", log); len(got) != 0 {
		t.Errorf("a client gets another namespace's consumer routes: %v", names(got))
	}
}

func TestAClientInAConsumerNamespaceGetsItsConsumerRoutes(t *testing.T) {
	f := newFixture(t)
	svc := netip.MustParseAddrPort("10.96.0.21:80")
	backend := []api.Backend{{Service: "web.shop:80", Weight: 1, Endpoints: []api.Endpoint{{Addr: "10.244.0.7:8080"}}}}
	// The workload's identity is in namespace demo.
	f.controller.set(svc.String(), api.Destination{Known: true, Service: "web.shop", Endpoints: []api.Endpoint{{Addr: "10.244.0.7:8080"}},
		Routes: []api.Route{{Name: "shop/all", Backends: backend}, {Name: "demo/mine", Consumer: "demo", Backends: backend}, {Name: "other/theirs", Consumer: "other", Backends: backend}}})
	c := f.client(t, f.controller.srv.Listener.Addr().String(), nil)
	set := c.Resolve(context.Background(), svc)
	eventually(t, "the routes", func() bool { return len(set.Routes()) > 0 })
	if rs := set.Routes(); len(rs) != 1 || rs[0].Name != "demo/mine" {
		t.Errorf("routes %+v, want only demo's consumer route", rs)
	}
	// Config.Namespace overrides the identity's.
	svc2 := netip.MustParseAddrPort("10.96.0.22:80")
	f.controller.set(svc2.String(), api.Destination{Known: true, Service: "web.shop", Endpoints: []api.Endpoint{{Addr: "10.244.0.7:8080"}},
		Routes: []api.Route{{Name: "shop/all", Backends: backend}, {Name: "demo/mine", Consumer: "demo", Backends: backend}}})
	c2 := f.client(t, f.controller.srv.Listener.Addr().String(), func(cfg *Config) { cfg.Namespace = "elsewhere" })
	set2 := c2.Resolve(context.Background(), svc2)
	eventually(t, "the routes", func() bool { return len(set2.Routes()) > 0 })
	if rs := set2.Routes(); len(rs) != 1 || rs[0].Name != "shop/all" {
		t.Errorf("routes %+v, want only the producer route", rs)
	}
}
