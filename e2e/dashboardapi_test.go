//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/cli/dashboard"
	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/certs"
)

// dashboardAPI GETs path from the dashboard at u with the given bearer
// token ("" none), decoding a 200 answer's JSON into v (when not nil),
// and returns the status.
func dashboardAPI(t *testing.T, u *url.URL, token, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+u.Host+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode
}

// dashboardToken is the token in the fragment of the dashboard's
// address (#/topology?namespace=NS&token=TOKEN).
func dashboardToken(t *testing.T, u *url.URL) string {
	t.Helper()
	_, query, _ := strings.Cut(u.Fragment, "?")
	q, err := url.ParseQuery(query)
	if token := q.Get(dashboard.TokenParam); err == nil && len(token) >= 16 {
		return token
	}
	t.Fatalf("the dashboard's address %s carries no token in its fragment", u)
	return ""
}

// checkDashboardToken checks that the dashboard at link refuses requests
// without its token (another user of the machine reaches 127.0.0.1 too)
// and serves those with it; it returns the token.
func checkDashboardToken(t *testing.T, u *url.URL, ns string) string {
	t.Helper()
	token := dashboardToken(t, u)
	if u.RawQuery != "" {
		t.Errorf("the dashboard's address %s has a query, which browsers send: the token belongs in the fragment", u)
	}
	path := "/api/graph?namespace=" + ns
	for _, bad := range []string{"", token[:len(token)-1], token + "x"} {
		if code := dashboardAPI(t, u, bad, path, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s with token %q: %d, want 401", path, bad, code)
		}
	}
	if code := dashboardAPI(t, u, "", path+"&token="+token, nil); code != http.StatusUnauthorized {
		t.Errorf("GET %s with the token in the query: %d, want 401 (only the header carries it)", path, code)
	}
	var g dashboard.Graph
	if code := dashboardAPI(t, u, token, path, &g); code != http.StatusOK || len(g.Nodes) == 0 {
		t.Errorf("GET %s with the token: %d, %d nodes; want 200 and the namespace's graph", path, code, len(g.Nodes))
	}
	return token
}

// checkDashboardAPI reads the workload, identity and health pages' API
// on the real cluster: web's pod with the certificate the installed
// issuer signed and load→web among its inbound edges; the anchor and the
// issuer installed, and no proxy of ns on another issuer or unread; and
// the same checks with the same results as `meshctl check --proxy`.
func checkDashboardAPI(t *testing.T, u *url.URL, token, ns string, anchor, issuer *ca.KeyPair) {
	t.Helper()
	issuerFP, anchorFP := certs.Fingerprint(issuer.Cert), certs.Fingerprint(anchor.Cert)

	var w dashboard.Workload
	if code := dashboardAPI(t, u, token, "/api/workload?namespace="+ns+"&name=web", &w); code != http.StatusOK {
		t.Fatalf("the workload web: %d", code)
	}
	if len(w.Pods) != 1 || w.Pods[0].Identity == nil || w.Pods[0].Identity.IssuerFingerprint != issuerFP {
		t.Errorf("web's pods %+v: want one, its certificate signed by the installed issuer %s", w.Pods, issuerFP)
	} else if want := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/default", ns); w.Pods[0].Identity.SPIFFEID != want {
		t.Errorf("web's proxy proves %q, want %q", w.Pods[0].Identity.SPIFFEID, want)
	}
	if !slices.ContainsFunc(w.Inbound, func(e dashboard.Edge) bool { return e.Source == ns+"/load" }) {
		t.Errorf("web's inbound edges %+v: want one from %s/load", w.Inbound, ns)
	}

	var id dashboard.Identity
	if code := dashboardAPI(t, u, token, "/api/identity", &id); code != http.StatusOK {
		t.Fatalf("the identity page: %d", code)
	}
	if len(id.TrustAnchors) != 1 || id.TrustAnchors[0].Fingerprint != anchorFP {
		t.Errorf("trust anchors %+v, want the one installed (%s)", id.TrustAnchors, anchorFP)
	}
	if id.Issuer == nil || id.Issuer.Fingerprint != issuerFP {
		t.Errorf("issuer %+v, want the one installed (%s)", id.Issuer, issuerFP)
	}
	if id.Proxies < 5 {
		t.Errorf("%d proxies read, want at least the scene's 5", id.Proxies)
	}
	for _, p := range append(slices.Clone(id.OnOldIssuer), id.Unread...) {
		if p.Namespace == ns {
			t.Errorf("%s/%s listed on an old issuer or unread: %+v", p.Namespace, p.Pod, p)
		}
	}
	t.Logf("identity page: %d proxies, %d on an old issuer, %d unread, errors %q", id.Proxies, len(id.OnOldIssuer), len(id.Unread), id.Errors)

	var h dashboard.Health
	if code := dashboardAPI(t, u, token, "/api/health", &h); code != http.StatusOK {
		t.Fatalf("the health page: %d", code)
	}
	out, _ := meshctl(t, true, "check", "--proxy", "--wait=false", "-o", "json")
	var cli struct {
		Success bool                 `json:"success"`
		Checks  []healthcheck.Result `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatalf("meshctl check -o json: %v\n%s", err, out)
	}
	show := func(rs []healthcheck.Result) []string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprintf("%s/%s: %s", r.Category, r.Name, r.Status))
		}
		return s
	}
	if got, want := show(h.Results), show(cli.Checks); !slices.Equal(got, want) || h.Passed != cli.Success {
		t.Errorf("the health page (passed %v):\n%q\nmeshctl check --proxy (success %v):\n%q", h.Passed, got, cli.Success, want)
	}
	if len(h.Results) < 10 {
		t.Errorf("the health page ran %d checks, want every category's", len(h.Results))
	}
}
