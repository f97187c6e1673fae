package proxy

import (
	"io"
	"net/http"
	"net/netip"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/proxy/authz"
)

// TestTheKubeletsProbesAreCountedApart: the node's declared probes are
// counted under authority kubelet-probe, answered or not (the application
// not listening yet: the proxy's own 502), so that no one takes them for
// unmeshed clients; the node's other requests are not.
func TestTheKubeletsProbesAreCountedApart(t *testing.T) {
	for _, up := range []bool{true, false} {
		app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		port := portOf(t, app)
		if !up {
			app = closedPort(t)
			port = portOf(t, app)
		}
		g := authz.New(meshnames.DefaultAllUnauthenticated)
		g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, Probes: []api.Probe{{Port: int(port), Path: "/healthz"}}})
		p := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app},
			InboundPolicy: g, AdminAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		for _, path := range []string{"/healthz", "/healthz", "/other"} {
			res, err := h1Client().Get("http://" + p.inbound() + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
		}
		fams := scrape(t, p)
		probes := metricValue(fams, "response_total", map[string]string{"direction": "inbound", "authority": meshnames.ProbeAuthority})
		all := metricValue(fams, "response_total", map[string]string{"direction": "inbound"})
		if probes != 2 || all != 3 {
			t.Errorf("application up %v: %v responses counted as probes of %v, want 2 of 3", up, probes, all)
		}
	}
}
