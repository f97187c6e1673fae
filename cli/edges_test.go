package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/cli/proxystats"
)

// TestEdgesOverAWindowForgetWhatWasFixed: with -t above zero an edge whose
// plaintext requests all came before the window shows secured, a pod not
// read at the window's start is left out (and named), and -t 0 keeps
// everything since the proxies started.
func TestEdgesOverAWindowForgetWhatWasFixed(t *testing.T) {
	secured := proxystats.Series{Direction: "outbound", TLS: true, ServerID: "spiffe://td/ns/demo/sa/api", DstWorkload: "api", Authority: "api.demo.svc.cluster.local:80", Status: "200", Success: true}
	plain := secured
	plain.TLS, plain.ServerID = false, ""
	start := &proxystats.Sample{Started: 1, Responses: map[proxystats.Series]float64{plain: 40, secured: 10}}
	end := &proxystats.Sample{Started: 1, Responses: map[proxystats.Series]float64{plain: 40, secured: 30}}
	resources := func() []proxystats.Resource {
		return []proxystats.Resource{{Kind: "deployment", Namespace: "demo", Name: "web", Pods: []*proxystats.Pod{
			{Namespace: "demo", Name: "web-1", Meshed: true, Start: start, End: end},
			{Namespace: "demo", Name: "web-2", Meshed: true, End: end}, // started within the window
		}}}
	}
	for _, c := range []struct {
		window       time.Duration
		secured      bool
		requests     float64
		warnsAboutW2 bool
	}{
		{10 * time.Second, true, 20, true},
		{0, false, 140, false},
	} {
		res := resources()
		var warn strings.Builder
		keepWindow(res, c.window, &warn)
		edges := proxystats.Edges(res, nil)
		if len(edges) != 1 || edges[0].Secured != c.secured || edges[0].Requests != c.requests {
			t.Errorf("-t %s: %+v, want one edge web>api, secured %v, %v requests", c.window, edges, c.secured, c.requests)
		}
		if got := strings.Contains(warn.String(), "demo/web-2: not read at the window's start"); got != c.warnsAboutW2 {
			t.Errorf("-t %s: warnings %q", c.window, warn.String())
		}
	}
}
