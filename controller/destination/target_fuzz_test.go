package destination

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/internal/api"
)

// fuzzWatcher is a synced Watcher over the test Service web.shop (ClusterIP
// 10.96.0.50, port 80) and the pod web-a (10.244.0.10), for the fuzz
// targets, which have a testing.F rather than a testing.T.
func fuzzWatcher(tb testing.TB) *Watcher {
	tb.Helper()
	client := fake.NewClientset(svc, pod("web-a", "10.244.0.10", "web", true))
	factory := informers.NewSharedInformerFactory(client, 0)
	w, err := New(factory, "cluster.local", "cluster.local")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); factory.Shutdown() })
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return w
}

// formatTarget writes a parsed target back as host:port, in the canonical
// form (a pod IP, or the Service's full cluster name); ok is false for the
// zero target (outside the cluster), which has no cluster form.
func formatTarget(t target, clusterDomain string) (string, bool) {
	switch {
	case t.podIP != "":
		return net.JoinHostPort(t.podIP, strconv.Itoa(t.podPort)), true
	case t.service != nil:
		return net.JoinHostPort(t.service.Name+"."+t.service.Namespace+".svc."+clusterDomain, strconv.Itoa(int(t.port.Port))), true
	}
	return "", false
}

// clusterIPKey is the namespace/name of the Service whose ClusterIP is ip.
func clusterIPKey(w *Watcher, ip string) (string, bool) {
	for _, o := range w.services.GetIndexer().List() {
		if svc := o.(*corev1.Service); slices.Contains(svc.Spec.ClusterIPs, ip) || svc.Spec.ClusterIP == ip {
			return svc.Namespace + "/" + svc.Name, true
		}
	}
	return "", false
}

// checkTarget is FuzzParseTarget's oracle for one target, as the handler
// reads it from the query (already percent-decoded).
func checkTarget(t *testing.T, w *Watcher, raw string) {
	t.Helper()
	got, err := w.parse(raw)
	host, portStr, splitErr := net.SplitHostPort(raw)
	port, atoiErr := strconv.Atoi(portStr)
	wellFormed := splitErr == nil && atoiErr == nil && port >= 1 && port <= 65535

	// Differential reference: net.SplitHostPort and a port of 1 to 65535
	// decide what is refused.
	if err != nil {
		if !errors.Is(err, ErrBadTarget) {
			t.Fatalf("parse(%q): error %v is not ErrBadTarget", raw, err)
		}
		if wellFormed {
			t.Fatalf("parse(%q) refused a host:port that net.SplitHostPort reads as %q, %d: %v", raw, host, port, err)
		}
		if got != (target{}) {
			t.Fatalf("parse(%q) refused but returned %+v", raw, got)
		}
		return
	}
	if !wellFormed {
		t.Fatalf("parse(%q) accepted what is not host:port with a port of 1 to 65535 (split: %v, port %q)", raw, splitErr, portStr)
	}
	// Differential reference for IP targets: netip.ParseAddrPort, the
	// parser of the proxies' own addresses (which send them unmapped).
	if ap, perr := netip.ParseAddrPort(raw); perr == nil && ap.Port() != 0 {
		want := ap.Addr().Unmap().WithZone("").String()
		if got.service != nil {
			if !slices.Contains(got.service.Spec.ClusterIPs, want) || int(got.port.Port) != int(ap.Port()) {
				t.Fatalf("parse(%q) = Service %s port %d, not ClusterIP %s port %d", raw, got.key, got.port.Port, want, ap.Port())
			}
		} else if key, ok := clusterIPKey(w, want); ok {
			// A Service's ClusterIP on a port the Service does not have:
			// the Service, with nothing to route to.
			if got != (target{key: key}) {
				t.Fatalf("parse(%q) = %+v, want the Service %s without a port", raw, got, key)
			}
		} else if got.podIP != want || got.podPort != int(ap.Port()) {
			t.Fatalf("parse(%q) = pod %q port %d, want %s port %d", raw, got.podIP, got.podPort, want, ap.Port())
		}
	}
	if ip, perr := netip.ParseAddr(host); perr == nil {
		// An IP: a pod IP or a ClusterIP, in the form the indexes hold
		// (canonical, IPv4 unmapped), never a name.
		canon := ip.Unmap().WithZone("").String()
		if _, isService := clusterIPKey(w, canon); got.service == nil && !isService && (got.podIP != canon || got.podPort != port || got.key != canon) {
			t.Fatalf("parse(%q) = %+v, want the pod IP %s port %d", raw, got, canon, port)
		}
	} else {
		if got.podIP != "" || got.podPort != 0 {
			t.Fatalf("parse(%q): the name %q became a pod IP target %+v", raw, host, got)
		}
		if got.key != "" {
			// A cluster name: <name>.<ns> of valid, lowercase DNS labels.
			ns, name, ok := strings.Cut(got.key, "/")
			if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Label(name)) > 0 {
				t.Fatalf("parse(%q): key %q is not namespace/name of DNS labels", raw, got.key)
			}
			if !strings.HasPrefix(strings.ToLower(host), name+"."+ns) {
				t.Fatalf("parse(%q): key %q is not the name the target gave", raw, got.key)
			}
		}
	}
	if got.service != nil {
		if got.key != got.service.Namespace+"/"+got.service.Name {
			t.Fatalf("parse(%q): key %q for Service %s/%s", raw, got.key, got.service.Namespace, got.service.Name)
		}
		if int(got.port.Port) != port {
			t.Fatalf("parse(%q): Service port %d, want %d", raw, got.port.Port, port)
		}
	}
	// Canonical: the result written back parses to the same target.
	if again, ok := formatTarget(got, w.clusterDomain); ok {
		t2, err := w.parse(again)
		if err != nil || t2 != got {
			t.Fatalf("parse(%q) = %+v, written back as %q parses to %+v, %v", raw, got, again, t2, err)
		}
	}
}

// FuzzParseTarget feeds ServeHTTP's query (?target=…, percent-escapes and
// all) and checks (oracle, see checkTarget) that a target is refused,
// with ErrBadTarget and a 400 JSON error, exactly when net.SplitHostPort
// or the port range refuses it; that IP targets agree with
// netip.ParseAddrPort and are canonical (unmapped); that cluster names
// become a namespace/name of DNS labels; and that the target written back
// in canonical form parses to the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"web.shop:80", "web.shop.svc:80", "web.shop.svc.cluster.local:80", "web.shop.svc.cluster.local.:80",
		"WEB.Shop.svc.cluster.local:80", "web.shop:81", "nope.shop.svc:80", "example.com:443",
		"10.96.0.50:80", "10.244.0.10:8080", "[::ffff:10.96.0.50]:80", "[::ffff:10.244.0.10]:8080",
		"[fe80::1%25eth0]:80", "[2001:db8::1]:443", "[10.96.0.50]:80", "10.96.0.50:+80", "10.96.0.50:0080",
		"10.96.0.50:0", "10.96.0.50:65536", "10.96.0.50:-1", "web.shop%00:80", "web%2eshop:80",
		"web.shop:80%00", "a.b.c.d:80", ".shop:80", "web.:80", "no-port", "", ":80", "[::1]", "web..shop:80",
		"web.shop.svc.other.domain:80", strings.Repeat("a", 70) + ".shop:80", strings.Repeat("a.", 5000) + "b:80",
		"web.shop:80&target=evil.shop:80", "web/x.shop.svc:80",
	} {
		f.Add(url.QueryEscape(s))
		f.Add(s)
	}
	w := fuzzWatcher(f)
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery("target=" + query)
		if err != nil {
			return // net/http's Query drops what does not decode
		}
		raw := q.Get("target")
		checkTarget(t, w, raw)
		if _, err := w.parse(raw); err != nil {
			// The handler's refusal: 400, a JSON error with its reason.
			rec := httptest.NewRecorder()
			req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: api.DestinationsPath, RawQuery: "target=" + query}, Header: http.Header{}}
			w.ServeHTTP(rec, req.WithContext(t.Context()))
			var e api.Error
			if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Reason != "bad_target" || e.Error == "" {
				t.Fatalf("target %q refused by parse: handler answered %d %q", raw, rec.Code, rec.Body)
			}
		}
	})
}

// TestParseTargetCanonicalises: an IPv4-mapped ClusterIP names the Service,
// a name in capitals names the same Service as in lowercase, and a name
// that is no Kubernetes name is not a cluster name.
func TestParseTargetCanonicalises(t *testing.T) {
	w := fuzzWatcher(t)
	for _, raw := range []string{"[::ffff:10.96.0.50]:80", "WEB.Shop.svc.cluster.local:80", "web.shop.SVC.Cluster.Local.:80"} {
		got, err := w.parse(raw)
		if err != nil || got.service == nil || got.key != "shop/web" {
			t.Errorf("parse(%q) = %+v, %v; want the Service shop/web", raw, got, err)
		}
	}
	if got, err := w.parse("[::ffff:10.244.0.10]:8080"); err != nil || got.podIP != "10.244.0.10" {
		t.Errorf("an IPv4-mapped pod IP: %+v, %v; want 10.244.0.10", got, err)
	}
	for _, raw := range []string{"web\x00.shop.svc:80", "web/x.shop.svc:80", "we_b.shop.svc:80"} {
		if got, err := w.parse(raw); err != nil || got != (target{}) {
			t.Errorf("parse(%q) = %+v, %v; want a name outside the cluster", raw, got, err)
		}
	}
}
