package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/tap"
)

func TestInboundPolicyRefusesAndRateLimits(t *testing.T) {
	app := &counting{}
	addr := backend(t, app)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	g := authz.New(meshnames.DefaultDeny)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultDeny, Probes: []api.Probe{{Port: port, Path: "/ready"}}})
	// The test's client is the "node" (where probes come from).
	r := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr}, InboundPolicy: g,
		AdminAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c := h1Client()
	taps := r.p.tap.Subscribe(tap.Filter{}, 1000) // what tap says of each refusal
	defer r.p.tap.Unsubscribe(taps)
	reasons := func() map[string]int {
		out := map[string]int{}
		for len(taps.Events()) > 0 {
			if e := <-taps.Events(); e.Type == api.TapEnd {
				out[strconv.Itoa(e.Status)+" "+e.Reason]++
			}
		}
		return out
	}
	status := func(path string) (int, http.Header) {
		res, err := c.Get("http://" + r.inbound() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header
	}
	if got, _ := status("/"); got != 403 {
		t.Errorf("plaintext request under deny: %d, want 403", got)
	}
	if got, _ := status("/ready"); got != 200 {
		t.Errorf("the probe path: %d, want 200", got)
	}
	if app.hits.Load() != 1 {
		t.Errorf("the application saw %d requests, want only the probe", app.hits.Load())
	}
	if got := reasons(); got["403 unauthorized (default:deny)"] != 1 || got["200 "] != 1 {
		t.Errorf("tap's ends: %v, want the 403 with its rule and the probe's 200 with none", got)
	}
	// A TCP connection that is not HTTP is closed.
	conn, err := net.Dial("tcp", r.inbound())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("\x00\x01binary"))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(make([]byte, 10))
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("a refused opaque connection read %d bytes", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Error("a refused opaque connection was left open (read timed out) instead of closed")
	}
	conn.Close()

	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimit: 5})
	codes := map[int]int{}
	var retryAfter string
	for range 20 {
		code, h := status("/")
		codes[code]++
		if code == 429 {
			retryAfter = h.Get("Retry-After")
		}
	}
	if codes[200] < 5 || codes[200] > 6 || codes[429] < 14 || retryAfter != "1" {
		t.Errorf("20 requests at a 5/s limit: %v, Retry-After %q; want 5 × 200, the rest 429 with Retry-After 1", codes, retryAfter)
	}
	if got := reasons(); got["429 rate limited (rate-limit)"] != codes[429] {
		t.Errorf("tap's ends: %v, want each of the %d 429s with its rule", got, codes[429])
	}
	fams := scrape(t, r)
	if metricValue(fams, "inbound_policy_decisions_total", map[string]string{"decision": "deny"}) < 2 ||
		metricValue(fams, "inbound_policy_decisions_total", map[string]string{"decision": "rate_limited"}) < 14 {
		t.Error("decisions not counted")
	}
}
