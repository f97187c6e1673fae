package cli

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

func deployment(ns, name, sa string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	d.Spec.Template.Spec.ServiceAccountName = sa
	return d
}

// TestPeersMatchExactly: --to deploy/web is web's requests and not
// web-v2's (the prefix match that counted both), nor a web of another
// namespace; svc/ matches the Service's names at any port; ns/ every
// identity of the namespace; --from takes the client's identity; pods,
// bare names and a Service as a source are refused with the way to say it.
func TestPeersMatchExactly(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(deployment("demo", "web", "web"), deployment("demo", "web-v2", "web-v2"), deployment("demo", "plain", ""))
	id := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	out := func(authority, server, workload string) proxystats.Series {
		return proxystats.Series{Direction: "outbound", TLS: server != "", ServerID: server, DstWorkload: workload, Authority: authority}
	}
	in := func(client string) proxystats.Series {
		return proxystats.Series{Direction: "inbound", TLS: client != "", ClientID: client, Authority: "web:80"}
	}
	inAt := func(authority string) proxystats.Series {
		return proxystats.Series{Direction: "inbound", Authority: authority}
	}
	for _, tc := range []struct {
		flags peerFlags
		yes   []proxystats.Series
		no    []proxystats.Series
	}{
		{peerFlags{to: "deploy/web"},
			[]proxystats.Series{out("web:80", id("demo", "web"), "web"), out("10.0.0.1:80", id("demo", "web"), "")},
			[]proxystats.Series{out("web-v2:80", id("demo", "web-v2"), "web-v2"), out("web:80", id("other", "web"), "web"), out("web:80", "", "web"),
				out("web:80", id("demo", "web"), "web-canary"), in(id("demo", "web"))}},
		{peerFlags{to: "deploy/web", toNamespace: "other"},
			[]proxystats.Series{}, // no such Deployment: refused below
			nil},
		{peerFlags{to: "svc/web"},
			[]proxystats.Series{out("web:80", "", ""), out("web.demo:8080", "", ""), out("WEB.demo.svc.cluster.local", "", ""), out("web.demo.svc.cluster.local.:80", "", "")},
			[]proxystats.Series{out("web-v2:80", "", ""), out("web.other:80", "", ""), out("webx.demo.svc.cluster.local:80", "", "")}},
		{peerFlags{to: "ns/demo"},
			[]proxystats.Series{out("x:1", id("demo", "a"), ""), out("y:1", id("demo", "web-v2"), "")},
			[]proxystats.Series{out("x:1", id("demo2", "a"), ""), out("x:1", "", "")}},
		{peerFlags{from: "sa/load"},
			[]proxystats.Series{in(id("demo", "load"))},
			[]proxystats.Series{in(id("demo", "load-2")), in(id("other", "load")), in(""), out("web:80", id("demo", "load"), "")}},
		{peerFlags{from: "deploy/plain"},
			[]proxystats.Series{in(id("demo", "default"))},
			[]proxystats.Series{in(id("demo", "plain"))}},
		// Without --to, the requests the target receives, by authority.
		{peerFlags{authority: "web:80"},
			[]proxystats.Series{inAt("web:80")},
			[]proxystats.Series{inAt("web:8080"), inAt("web-v2:80"), out("web:80", "", "")}},
		{peerFlags{authority: "web"},
			[]proxystats.Series{inAt("web:80"), inAt("web:8080"), inAt("web")},
			[]proxystats.Series{inAt("web-v2:80"), inAt("web.demo:80")}},
		{peerFlags{to: "svc/web", authority: "web:8080"},
			[]proxystats.Series{out("web:8080", "", "")},
			[]proxystats.Series{out("web:80", "", "")}},
	} {
		r, err := tc.flags.resolve(ctx, client, "demo", "meshctl")
		if tc.flags.toNamespace == "other" {
			if err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("%+v: %v, want the Deployment not found", tc.flags, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%+v: %v", tc.flags, err)
		}
		keep := r.series(proxystats.Inbound)
		for _, s := range tc.yes {
			if !keep(s) {
				t.Errorf("%+v does not keep %+v", tc.flags, s)
			}
			if !tapKeeps(r, s) {
				t.Errorf("%+v: tap does not keep %+v", tc.flags, s)
			}
		}
		for _, s := range tc.no {
			if keep(s) {
				t.Errorf("%+v keeps %+v", tc.flags, s)
			}
			// Tap events carry no workload: only the identity tells.
			// And tap, unlike stat, shows both directions by default.
			if s.DstWorkload != "" && r.to != nil && r.to.matchID(s.ServerID) || r.to == nil && r.from == nil && s.Direction == "outbound" {
				continue
			}
			if tapKeeps(r, s) {
				t.Errorf("%+v: tap keeps %+v", tc.flags, s)
			}
		}
	}
	for value, want := range map[string]string{
		"web":          "want TYPE/NAME",
		"pod/web-1":    "not by pod",
		"rs/web-abc":   "unknown type",
		"deploy/":      "want TYPE/NAME",
		"svc/web.shop": "no Kubernetes name",
		"sa/a b":       "no Kubernetes name",
		"SA/..":        "no Kubernetes name",
	} {
		if _, err := (&peerFlags{to: value}).resolve(ctx, client, "demo", "meshctl"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--to %s: %v, want %q", value, err, want)
		}
	}
	if _, err := (&peerFlags{from: "svc/web"}).resolve(ctx, client, "demo", "meshctl"); err == nil || !strings.Contains(err.Error(), "sends no requests") {
		t.Errorf("--from svc/web: %v", err)
	}
	// Another namespace's Service: its bare name is the caller's own.
	other, err := (&peerFlags{to: "svc/web", toNamespace: "shop"}).resolve(ctx, client, "demo", "meshctl")
	if err != nil {
		t.Fatal(err)
	}
	if keep := other.series(nil); keep(out("web:80", "", "")) || !keep(out("web.shop:80", "", "")) {
		t.Error("--to svc/web --to-namespace shop: the bare name web (demo's own) kept, or web.shop not")
	}
	for _, bad := range []peerFlags{{to: "deploy/a", from: "deploy/b"}, {toNamespace: "x"}, {fromNamespace: "x"}, {to: "ns/a", toNamespace: "b"}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v: no refusal", bad)
		}
	}
}

// TestAuthorityNamesAServiceAddress: diagnostics endpoints' AUTHORITY, as
// an address or as a Service's name in any of its forms, with or without a
// port, picks the destinations (original addresses) it names.
func TestAuthorityNamesAServiceAddress(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.9", ClusterIPs: []string{"10.96.0.9"}}}
	client := fake.NewClientset(svc)
	for authority, want := range map[string][]string{
		"web":                           {"10.96.0.9:80", "10.96.0.9:8080"},
		"web:80":                        {"10.96.0.9:80"},
		"web.demo:8080":                 {"10.96.0.9:8080"},
		"web.demo.svc.cluster.local:80": {"10.96.0.9:80"},
		"web.demo.svc.cluster.local.":   {"10.96.0.9:80", "10.96.0.9:8080"},
		"10.96.0.9:80":                  {"10.96.0.9:80"},
		"10.96.0.99":                    nil,
	} {
		match, err := authorityAddrs(context.Background(), client, authority, "demo")
		if err != nil {
			t.Fatalf("%s: %v", authority, err)
		}
		var got []string
		for _, dst := range []string{"10.96.0.9:80", "10.96.0.9:8080", "10.96.0.10:80"} {
			if match(dst) {
				got = append(got, dst)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", authority, got, want)
		}
	}
	if _, err := authorityAddrs(context.Background(), client, "api.demo:80", "demo"); command.ExitStatus(err) != command.ExitNotFound {
		t.Errorf("a Service that does not exist: %v", err)
	}
}

// tapKeeps says whether tap, with the flags resolved in r, shows a request
// like the series s: its start names the client and the authority, not the
// server (the endpoint is chosen later); its end the identity proved.
func tapKeeps(r resolvedPeers, s proxystats.Series) bool {
	f := tapFilter(r, tapstream.Filter{})
	start := tapstream.Event{Type: "start", ID: 1, Direction: s.Direction, Authority: s.Authority, ClientID: s.ClientID}
	end := tapstream.Event{Type: "end", ID: 1, ServerID: s.ServerID}
	if f.Direction != "" && f.Direction != s.Direction || !spiffeid.PathMatches(f.ClientIDPath, s.ClientID) {
		return false // the proxy's own filters
	}
	return (f.Keep == nil || f.Keep(start)) && (f.KeepEnd == nil || f.KeepEnd(start, end))
}
