package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/command"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// outputFixtures render each read command's output, as it prints it, for a
// fixed value; warnings go to their own writer.
var outputFixtures = map[string]func(w, warn io.Writer, format string) error{
	"stat": func(w, warn io.Writer, format string) error {
		bounds := []float64{10, 50, 100}
		rows := []proxystats.Row{
			{Namespace: "shop", Kind: "deployment", Name: "web", Meshed: 3, Pods: 3, Requests: 600, Successes: 594, SuccessRate: 0.99, RPS: 60, P50: 10, P95: 50, P99: 100, TCPConns: 4, Bounds: bounds},
			{Namespace: "shop", Kind: "deployment", Name: "idle", Meshed: 1, Pods: 2, SuccessRate: math.NaN(), P50: math.NaN(), P95: math.NaN(), P99: math.NaN(), Bounds: bounds,
				Errors: []string{"pod shop/idle-1: no proxy"}},
		}
		return printStat(w, warn, format, rows, true, false)
	},
	"edges": func(w, _ io.Writer, format string) error {
		return printEdges(w, format, []proxystats.Edge{
			{SrcNamespace: "shop", Src: "load", DstNamespace: "shop", Dst: "web", Secured: true, Requests: 120, DstIDs: []string{"spiffe://cluster.local/ns/shop/sa/web"}},
			{Src: "unmeshed client", DstNamespace: "shop", Dst: "web", Requests: 5, Reason: proxystats.ReasonPlaintextToMeshed},
		})
	},
	"tap": func(w, _ io.Writer, format string) error {
		names := fixedPodNames(map[string]string{"10.244.0.9": "shop/load-1", "10.244.0.7": "shop/web-2", "203.0.113.5": ""})
		yes := true
		at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
		for _, e := range []tapstream.PodEvent{
			{Namespace: "shop", Pod: "web-2", Event: api.TapEvent{Type: api.TapStart, ID: 1, Time: at, Direction: "inbound", Method: "GET", Authority: "web.shop:80", Path: "/api/\u202eevil",
				ClientID: "spiffe://cluster.local/ns/shop/sa/load", ClientAddr: "10.244.0.9:41000"}},
			{Namespace: "shop", Pod: "web-2", Event: api.TapEvent{Type: api.TapHeaders, ID: 1, Time: at, Status: 403, LatencyMs: 0.4}},
			{Namespace: "shop", Pod: "web-2", Event: api.TapEvent{Type: api.TapEnd, ID: 1, Time: at, Status: 403, LatencyMs: 0.5, Bytes: 61, TLS: &yes, Reason: "unauthorized (default:deny)"}},
			{Namespace: "shop", Pod: "load-1", Event: api.TapEvent{Type: api.TapStart, ID: 7, Time: at, Direction: "outbound", Method: "POST", Authority: "web.shop:80", Path: "/orders"}},
			{Namespace: "shop", Pod: "load-1", Event: api.TapEvent{Type: api.TapEnd, ID: 7, Time: at, Status: 200, LatencyMs: 3.2, Bytes: 12, Endpoint: "10.244.0.7:8080",
				ServerID: "spiffe://cluster.local/ns/shop/sa/web", TLS: &yes, Retries: 1}},
			{Namespace: "shop", Pod: "load-1", Event: api.TapEvent{Type: api.TapEnd, ID: 8, Time: at, Status: 503, Endpoint: "203.0.113.5:80", Reason: "all failing"}},
			{Namespace: "shop", Pod: "load-1", Event: api.TapEvent{Type: api.TapDropped, Time: at, Count: 12}},
		} {
			if err := printTapEvent(context.Background(), w, format, names, e); err != nil {
				return err
			}
		}
		return nil
	},
	"top": func(w, _ io.Writer, format string) error {
		return printTop(w, format, []tapstream.Row{
			{Key: tapstream.Key{Source: "shop/load", Destination: "shop/web", Method: "GET", Path: "/api"}, Count: 40, Estimated: 40, Successes: 39, BestMs: 1.2, WorstMs: 30, LastMs: 2},
			{Key: tapstream.Key{Source: "shop/load", Destination: "shop/web", Method: "POST", Path: "/orders"}, Count: 2, Estimated: 8, Sampled: true, Successes: 2, BestMs: 3, WorstMs: 4, LastMs: 3},
		})
	},
	"authz": func(w, warn io.Writer, format string) error {
		return printAuthz(w, warn, format, &authzReport{
			Default:       authzDefault{Policy: "deny", Source: "namespace shop"},
			Ports:         []authzPort{{Port: 8080, Policies: []string{"web-from-load"}}, {Port: 9090, Default: "deny"}},
			Decisions:     []authzRate{{Rule: "web-from-load", Allowed: 12.5}, {Rule: "default:deny", Denied: 0.5}},
			WindowSeconds: 10,
			Policies:      []authzPolicy{{Name: "web-from-load", Port: "http", PathPrefixes: []string{"/api"}, From: []string{"spiffe://cluster.local/ns/shop/sa/load"}}},
			Errors:        []string{"pod shop/web-3: not read"},
		})
	},
	"routes": func(w, _ io.Writer, format string) error {
		success, p50 := 0.98, 12.0
		return printRoutes(w, format, []*routeBackend{
			{Route: "shop/web-split", Rule: 0, Matches: "PathPrefix /", Accepted: "True", Backend: "web-v1:80", Weight: 90, Percent: 90, Workloads: []string{"web-v1"}, RPS: 9, Success: &success, P50: &p50},
			{Route: "shop/web-split", Rule: 0, Matches: "PathPrefix /", Accepted: "True", Backend: "web-v2:80", Weight: 10, Percent: 10, Workloads: []string{"web-v2"}},
		})
	},
	"diagnostics-endpoints": func(w, _ io.Writer, format string) error {
		return printEndpoints(w, format, []destinationView{
			{Destination: "10.96.0.12:80", Service: "web.shop", Endpoints: []api.DestinationEndpoint{{Addr: "10.244.0.7:8080", Identity: "spiffe://cluster.local/ns/shop/sa/web"}, {Addr: "10.244.0.8:8080"}}},
			{Destination: "10.96.0.20:5432", Service: "db.shop", Endpoints: []api.DestinationEndpoint{{Addr: "10.244.0.9:5432", Identity: "spiffe://cluster.local/ns/shop/sa/db", Opaque: true}}},
		})
	},
	"diagnostics-policy": func(w, _ io.Writer, format string) error {
		v, err := policyView("shop/web-2", fixturePolicy, map[int]string{8080: "http", 9090: ""}, "")
		if err != nil {
			return err
		}
		return printPolicy(w, format, v)
	},
	"identity-show": func(w, _ io.Writer, format string) error {
		from := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
		return printIdentity(w, format, "shop/web-2", proxyIdentity{
			SPIFFEID: "spiffe://cluster.local/ns/shop/sa/web", Serial: "1f2e", IssuerFingerprint: "ab12",
			NotBefore: from, NotAfter: from.Add(24 * time.Hour), TrustRootFingerprints: []string{"cd34", "ef56"},
		}, from.Add(6*time.Hour))
	},
	"check": func(w, _ io.Writer, format string) error {
		results := []healthcheck.Result{
			{Category: "control-plane", Name: "the controller is ready", Status: healthcheck.OK},
			{Category: "identity", Name: "the issuer is valid", Status: healthcheck.Warning, Detail: "expires in 40 days", Hint: "meshctl identity rotate-issuer"},
			{Category: "proxies", Name: "every proxy is ready", Status: healthcheck.Error, Detail: "shop/web-2 is not ready", Hint: "kubectl logs -n shop web-2 -c mesh-proxy"},
		}
		if structured(format) {
			return writeStructured(w, format, healthcheck.NewReport(results, false))
		}
		table := healthcheck.NewTable(w)
		for _, r := range results {
			table.Add(r)
		}
		return table.Finish(results, false)
	},
	"version": func(w, _ io.Writer, format string) error {
		return writeVersions(w, format, versions{Client: "v1.2.3", ControlPlane: "v1.2.2"})
	},
}

var fixturePolicy = api.InboundPolicy{
	Default: "deny",
	Rules: []api.AuthorizationRule{
		{Name: "shop/web-from-load", Port: 8080, PathPrefixes: []string{"/api", "/x\u202e\x1b[31m"}, Identities: []string{"spiffe://cluster.local/ns/shop/sa/load"}},
		{Name: "shop/any-meshed", Port: 8080, Identities: []string{"*"}},
		{Name: "shop/admin", Port: 7070, Identities: []string{"spiffe://cluster.local/ns/ops/sa/admin"}},
		{Name: "shop/monitoring", PathPrefixes: []string{"/metrics"}, Identities: []string{"spiffe://cluster.local/ns/ops/sa/prometheus"}},
	},
	Probes:    []api.Probe{{Port: 8080, Path: "/healthz"}, {Port: 9090}},
	RateLimit: 100,
}

// TestPolicyViewPerPort: every container port, and the ports rules and
// probes name, each with what decides there; PORT by number or name; a
// name the pod lacks is not found, a bad number bad usage.
func TestPolicyViewPerPort(t *testing.T) {
	ports := map[int]string{8080: "http", 9090: ""}
	v, err := policyView("shop/web-2", fixturePolicy, ports, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range v.Ports {
		got = append(got, fmt.Sprintf("%d:%d rules:%s:%d probes", p.Port, len(p.Rules), p.Default, len(p.Probes)))
	}
	// shop/monitoring covers every port (port 0): no port is left to the default.
	if want := []string{"7070:2 rules::0 probes", "8080:3 rules::1 probes", "9090:1 rules::1 probes"}; !slices.Equal(got, want) {
		t.Errorf("ports %v, want %v", got, want)
	}
	for _, port := range []string{"http", "8080"} {
		if v, err := policyView("shop/web-2", fixturePolicy, ports, port); err != nil || len(v.Ports) != 1 || v.Ports[0].Port != 8080 || v.Ports[0].Name != "http" || len(v.Ports[0].Rules) != 3 {
			t.Errorf("PORT %s: %+v, %v", port, v.Ports, err)
		}
	}
	if v, err := policyView("shop/web-2", fixturePolicy, ports, "6000"); err != nil || len(v.Ports) != 1 || len(v.Ports[0].Rules) != 1 || v.Ports[0].Default != "" {
		t.Errorf("PORT 6000 (no container port, no rule of its own): %+v, %v; want the every-port rule", v.Ports, err)
	}
	noAll := fixturePolicy
	noAll.Rules = fixturePolicy.Rules[:3]
	if v, err := policyView("shop/web-2", noAll, ports, "6000"); err != nil || len(v.Ports) != 1 || v.Ports[0].Default != "deny" {
		t.Errorf("PORT 6000 without an every-port rule: %+v, %v; want the default", v.Ports, err)
	}
	if _, err := policyView("shop/web-2", fixturePolicy, ports, "grpc"); command.ExitStatus(err) != 3 {
		t.Errorf("PORT grpc (no such name): %v, want not found", err)
	}
	if _, err := policyView("shop/web-2", fixturePolicy, ports, "70000"); command.ExitStatus(err) != 2 {
		t.Errorf("PORT 70000: %v, want bad usage", err)
	}
}

// fixedPodNames names addresses from a table, never asking a cluster.
func fixedPodNames(names map[string]string) *podNames {
	cache, _ := lru.New[string, podName](len(names) + 1)
	now := time.Now()
	for addr, name := range names {
		cache.Add(addr, podName{name: name, at: now})
	}
	return &podNames{cache: cache, warn: io.Discard, now: func() time.Time { return now }}
}

// TestEveryReadCommandPrintsEveryFormat holds the shapes of every read
// command's -o table, wide, json and yaml in golden files
// (testdata/output/COMMAND.FORMAT; go test ./cli -run
// TestEveryReadCommandPrintsEveryFormat -update rewrites them). JSON must
// parse and use snake_case names; YAML must carry the same names; warnings
// go to stderr, never into what scripts parse.
func TestEveryReadCommandPrintsEveryFormat(t *testing.T) {
	for name, render := range outputFixtures {
		for _, format := range outputFormats {
			t.Run(name+"/"+format, func(t *testing.T) {
				var out, warn bytes.Buffer
				if err := render(&out, &warn, format); err != nil {
					t.Fatal(err)
				}
				got := out.String()
				if warn.Len() > 0 {
					got += "# stderr:\n" + warn.String()
				}
				golden := filepath.Join("testdata", "output", name+"."+format)
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to write it)", err)
				}
				if got != string(want) {
					t.Errorf("-o %s changed:\n--- got\n%s\n--- want (%s)\n%s", format, got, golden, want)
				}
				if structured(format) && strings.Contains(warn.String(), "warning") {
					t.Errorf("-o %s: warnings are in the output's place? %q", format, warn.String())
				}
				if format == outputJSON {
					checkSnakeCase(t, out.Bytes())
				}
				if strings.ContainsRune(out.String(), '\u202e') || strings.ContainsRune(out.String(), '\x1b') {
					t.Errorf("-o %s printed a bidirectional override or an escape raw", format)
				}
			})
		}
	}
}

// checkSnakeCase fails t when a name in the JSON documents of out (one or
// a stream) is not snake_case.
func checkSnakeCase(t *testing.T, out []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				if !snakeCase.MatchString(k) {
					t.Errorf("JSON name %q is not snake_case", k)
				}
				walk(e)
			}
		}
	}
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("-o json: %v", err)
		}
		walk(v)
	}
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestYAMLKeepsTheJSONNames: -o yaml is the JSON's shape (its snake_case
// names, nulls and numbers), strings made printable.
func TestYAMLKeepsTheJSONNames(t *testing.T) {
	v := struct {
		SuccessRate *float64          `json:"success_rate"`
		Path        string            `json:"path"`
		Labels      map[string]string `json:"labels"`
	}{Path: "/a\u202eb\x1b[31m", Labels: map[string]string{"k\u2066": "v"}}
	var b bytes.Buffer
	if err := writeYAML(&b, v); err != nil {
		t.Fatal(err)
	}
	want := "labels:\n  k\\u2066: v\npath: /a\\u202eb\\x1b[31m\nsuccess_rate: null\n"
	if b.String() != want {
		t.Errorf("yaml:\n%s\nwant:\n%s", b.String(), want)
	}
}
