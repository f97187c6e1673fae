package authz

import (
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

const (
	client   = "spiffe://cluster.local/ns/shop/sa/client"
	intruder = "spiffe://cluster.local/ns/shop/sa/intruder"
)

func TestPolicyEvaluation(t *testing.T) {
	g := New(meshnames.DefaultDeny)
	g.Update(api.InboundPolicy{
		Default: meshnames.DefaultDeny,
		Rules: []api.AuthorizationRule{
			{Name: "shop/web", Port: 8080, Identities: []string{client}},
			{Name: "shop/admin", Port: 9000, PathPrefixes: []string{"/metrics"}, Identities: []string{"*"}},
		},
		Probes: []api.Probe{{Port: 8080, Path: "/healthz"}, {Port: 7000}},
	})
	for _, tc := range []struct {
		name     string
		port     uint16
		path     string
		clientID string
		http     bool
		want     int
		rule     string
	}{
		{"allowed client", 8080, "/", client, true, 0, "shop/web"},
		{"another identity on a covered port", 8080, "/", intruder, true, 403, "shop/web"},
		{"plaintext on a covered port", 8080, "/", "", true, 403, "shop/web"},
		{"probe path, plaintext", 8080, "/healthz", "", true, 0, "probe"},
		{"probe path prefix is not the probe", 8080, "/healthz/x", "", true, 403, "shop/web"},
		{"probe path from a pod, not the node", 8080, "/healthz", "", true, 403, "shop/web"},
		{"dot segments resolve before matching", 9000, "/metrics/../debug", intruder, true, 403, "shop/admin"},
		{"prefixes match whole segments", 9000, "/metricsx", intruder, true, 403, "shop/admin"},
		{"TCP probe port", 7000, "", "", false, 0, "probe"},
		{"an HTTP request on a TCP probe's port", 7000, "/", "", true, 403, "default:deny"},
		{"path prefix, any meshed client", 9000, "/metrics/x", intruder, true, 0, "shop/admin"},
		{"outside the path prefix", 9000, "/debug", intruder, true, 403, "shop/admin"},
		{"opaque connection on a path-limited port", 9000, "", client, false, 403, "shop/admin"},
		{"uncovered port: the default", 5000, "/", client, true, 403, "default:deny"},
	} {
		// Plaintext cases come from the node, unless their name says a pod.
		d := g.Admit(Request{Port: tc.port, Path: tc.path, ClientID: tc.clientID, HTTP: tc.http, FromNode: tc.clientID == "" && !strings.Contains(tc.name, "pod")})
		if d.Status != tc.want || d.Rule != tc.rule {
			t.Errorf("%s: %+v, want status %d by %s", tc.name, d, tc.want, tc.rule)
		}
	}
	for def, want := range map[string][2]int{meshnames.DefaultAllUnauthenticated: {0, 0}, meshnames.DefaultAllAuthenticated: {0, 403}, meshnames.DefaultDeny: {403, 403}} {
		g.Update(api.InboundPolicy{Default: def})
		if got := [2]int{g.Admit(Request{Port: 80, Path: "/", ClientID: client, HTTP: true}).Status, g.Admit(Request{Port: 80, Path: "/", ClientID: "", HTTP: true}).Status}; got != want {
			t.Errorf("default %s: meshed %d, plaintext %d; want %v", def, got[0], got[1], want)
		}
	}
}

func TestRateLimits(t *testing.T) {
	var counted = map[string]int{}
	g := New(meshnames.DefaultAllUnauthenticated)
	g.CountWith(func(decision, _ string) { counted[decision]++ })
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimit: 10, Probes: []api.Probe{{Port: 80, Path: "/ready"}}})
	allowed := 0
	for range 100 {
		d := g.Admit(Request{Port: 80, Path: "/", ClientID: client, HTTP: true})
		if d.Allowed() {
			allowed++
		} else if d.Status != 429 || d.RetryAfter <= 0 {
			t.Fatalf("refused with %+v, want 429 and a Retry-After", d)
		}
	}
	// A burst gets a second's worth; the rest waits.
	if allowed < 10 || allowed > 11 {
		t.Errorf("%d of 100 immediate requests allowed at 10/s, want 10", allowed)
	}
	if !g.Admit(Request{Port: 80, Path: "/ready", HTTP: true, FromNode: true}).Allowed() {
		t.Error("a probe was rate limited")
	}
	if counted[RateLimited] < 89 || counted[Allowed] < 11 {
		t.Errorf("counted %v", counted)
	}
	// Per client: each identity has its own bucket; an unchanged rate keeps its state.
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimitPerClient: 5})
	per := map[string]int{}
	for range 20 {
		for _, id := range []string{client, intruder, ""} {
			if g.Admit(Request{Port: 80, Path: "/", ClientID: id, HTTP: true}).Allowed() {
				per[id]++
			}
		}
	}
	if per[client] != 5 || per[intruder] != 5 || per[""] != 5 {
		t.Errorf("per-client allowances %v, want 5 each", per)
	}
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimitPerClient: 5})
	if g.Admit(Request{Port: 80, Path: "/", ClientID: client, HTTP: true}).Allowed() {
		t.Error("an update with the same rate refilled the client's bucket")
	}
}

func TestAPendingGuardRefusesEverythingUntilItsPolicy(t *testing.T) {
	g := NewPending()
	for _, req := range []Request{
		{Port: 8080, HTTP: true, Path: "/", ClientID: client},
		{Port: 8080, HTTP: true, Path: "/healthz", FromNode: true},
		{Port: 7000},
	} {
		if d := g.Admit(req); d.Status != 403 || d.Rule != Pending {
			t.Errorf("%+v before the policy: %+v, want 403 by %s", req, d, Pending)
		}
	}
	if !g.HTTPOnly(8080) {
		t.Error("a pending guard lets opaque connections through")
	}
	select {
	case <-g.Ready():
		t.Fatal("ready before the policy")
	default:
	}
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated})
	<-g.Ready()
	if d := g.Admit(Request{Port: 8080, HTTP: true, Path: "/"}); !d.Allowed() {
		t.Errorf("after the policy: %+v", d)
	}
}

func TestHTTPOnlyPorts(t *testing.T) {
	g := New(meshnames.DefaultAllUnauthenticated)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, Rules: []api.AuthorizationRule{
		{Name: "a", Port: 8080, PathPrefixes: []string{"/api"}, Identities: []string{"*"}},
		{Name: "b", Port: 9000, Identities: []string{"*"}},
	}})
	for port, want := range map[uint16]bool{8080: true, 9000: false, 5432: false} {
		if got := g.HTTPOnly(port); got != want {
			t.Errorf("HTTPOnly(%d) = %v, want %v", port, got, want)
		}
	}
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimitPerClient: 10})
	if !g.HTTPOnly(5432) {
		t.Error("a rate-limited pod's ports must be HTTP only")
	}
}
