package destination

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/api"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestTranslateRoutesGolden translates every route under testdata/routes
// and compares the result, routes and verdict, with its .golden file.
// Unsupported routes must come out with no routes at all and a reason.
func TestTranslateRoutesGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/routes/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var tr Translation
			if strings.HasPrefix(name, "grpc-") {
				var r gatewayv1.GRPCRoute
				if err := yaml.UnmarshalStrict(raw, &r); err != nil {
					t.Fatal(err)
				}
				tr = TranslateGRPCRoute(&r)
			} else {
				var r gatewayv1.HTTPRoute
				if err := yaml.UnmarshalStrict(raw, &r); err != nil {
					t.Fatal(err)
				}
				tr = TranslateHTTPRoute(&r)
			}
			if tr.Unsupported != "" && len(tr.Routes) != 0 {
				t.Errorf("unsupported (%s) but %d routes kept", tr.Unsupported, len(tr.Routes))
			}
			got, err := json.MarshalIndent(tr, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("translation differs from %s:\n%s", golden, got)
			}
		})
	}
}

// TestMirrorShareInPartsPerMillion: a RequestMirror's share is carried in
// parts per million, so a fraction under 1 % still mirrors (it used to
// round to 0 %), a fraction rounds to the nearest millionth, a share of 0
// leaves the mirror out, and a fraction beyond 0–1 is refused. The legacy
// percent sent with it (for the proxies of the previous release) is the
// share rounded, but at least 1 % when the share is above 0: such a proxy
// mirrors every request when it reads no percent.
func TestMirrorShareInPartsPerMillion(t *testing.T) {
	for _, tc := range []struct {
		name            string
		percent         *int32
		fraction        *gatewayv1.Fraction
		wantPerMillion  int // 0: no mirror
		wantPercent     int
		wantUnsupported bool
	}{
		{name: "fraction 1/1000", fraction: &gatewayv1.Fraction{Numerator: 1, Denominator: ptr[int32](1000)}, wantPerMillion: 1_000, wantPercent: 1},
		{name: "fraction 1/3", fraction: &gatewayv1.Fraction{Numerator: 1, Denominator: ptr[int32](3)}, wantPerMillion: 333_333, wantPercent: 33},
		{name: "fraction 2/3 rounds up", fraction: &gatewayv1.Fraction{Numerator: 2, Denominator: ptr[int32](3)}, wantPerMillion: 666_667, wantPercent: 67},
		{name: "fraction 1/200: half a percent", fraction: &gatewayv1.Fraction{Numerator: 1, Denominator: ptr[int32](200)}, wantPerMillion: 5_000, wantPercent: 1},
		{name: "fraction 3/200 rounds to 2 %", fraction: &gatewayv1.Fraction{Numerator: 3, Denominator: ptr[int32](200)}, wantPerMillion: 15_000, wantPercent: 2},
		{name: "fraction 1 (of 100 by default)", fraction: &gatewayv1.Fraction{Numerator: 1}, wantPerMillion: 10_000, wantPercent: 1},
		{name: "fraction 1/10,000,000 mirrors a millionth", fraction: &gatewayv1.Fraction{Numerator: 1, Denominator: ptr[int32](10_000_000)}, wantPerMillion: 1, wantPercent: 1},
		{name: "fraction 0/100", fraction: &gatewayv1.Fraction{Numerator: 0, Denominator: ptr[int32](100)}},
		{name: "fraction 5/5", fraction: &gatewayv1.Fraction{Numerator: 5, Denominator: ptr[int32](5)}, wantPerMillion: 1_000_000, wantPercent: 100},
		{name: "fraction with denominator 0", fraction: &gatewayv1.Fraction{Numerator: 0, Denominator: ptr[int32](0)}, wantUnsupported: true},
		{name: "fraction over 1", fraction: &gatewayv1.Fraction{Numerator: 3, Denominator: ptr[int32](2)}, wantUnsupported: true},
		{name: "percent 25", percent: ptr[int32](25), wantPerMillion: 250_000, wantPercent: 25},
		{name: "percent 0", percent: ptr[int32](0)},
		{name: "percent 101", percent: ptr[int32](101), wantUnsupported: true},
		{name: "neither: every request", wantPerMillion: 1_000_000, wantPercent: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hr := &gatewayv1.HTTPRoute{}
			hr.Name, hr.Namespace = "web", "shop"
			hr.Spec.Rules = []gatewayv1.HTTPRouteRule{{
				Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
					BackendRef: gatewayv1.BackendObjectReference{Name: "audit", Port: ptr[gatewayv1.PortNumber](8080)},
					Percent:    tc.percent, Fraction: tc.fraction,
				}}},
			}}
			tr := TranslateHTTPRoute(hr)
			if tc.wantUnsupported {
				if tr.Unsupported == "" {
					t.Errorf("translated, want unsupported: %+v", tr.Routes)
				}
				return
			}
			if tr.Unsupported != "" || len(tr.Routes) != 1 {
				t.Fatalf("unsupported %q (%s), %d routes", tr.Unsupported, tr.Reason, len(tr.Routes))
			}
			ms := tr.Routes[0].Mirrors
			//lint:ignore SA1019 the controller still sends the legacy percent, for the proxies of the previous release
			percent := func(m api.Mirror) int { return m.Percent }
			switch {
			case tc.wantPerMillion == 0 && len(ms) != 0:
				t.Errorf("mirrors %+v, want none", ms)
			case tc.wantPerMillion != 0 && (len(ms) != 1 || ms[0].PerMillion != tc.wantPerMillion || percent(ms[0]) != tc.wantPercent || ms[0].Backend.Service != "audit.shop:8080"):
				t.Errorf("mirrors %+v, want audit.shop:8080 at %d per million, legacy percent %d", ms, tc.wantPerMillion, tc.wantPercent)
			}
		})
	}
}

// TestTranslationRefusesWhatTheSchemaWouldHave: values the API server's
// schema refuses are refused here too (a route that reached the
// controller another way): a path without a leading "/", a header name
// that is no token (in an HTTPRoute's match or edit, or a GRPCRoute's
// match), a backend port outside 1–65535, a backend name with a dot (it
// would make "a.b.ns:80" ambiguous), a backend namespace that is no
// namespace name; and a backend filter of another type than
// RequestHeaderModifier, even one that carries a requestHeaderModifier.
func TestTranslationRefusesWhatTheSchemaWouldHave(t *testing.T) {
	for name, spec := range map[string]string{
		"path":          `{rules: [{matches: [{path: {type: Exact, value: foo}}], backendRefs: [{name: echo, port: 80}]}]}`,
		"header":        `{rules: [{matches: [{headers: [{name: "a b", value: x}]}], backendRefs: [{name: echo, port: 80}]}]}`,
		"edit header":   `{rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: "a:b", value: x}]}}], backendRefs: [{name: echo, port: 80}]}]}`,
		"port 0":        `{rules: [{backendRefs: [{name: echo, port: 0}]}]}`,
		"port 65536":    `{rules: [{backendRefs: [{name: echo, port: 65536}]}]}`,
		"dotted name":   `{rules: [{backendRefs: [{name: a.b, port: 80}]}]}`,
		"bad namespace": `{rules: [{backendRefs: [{name: echo, namespace: Bad_NS, port: 80}]}]}`,
		"backend filter of another type": `{rules: [{backendRefs: [{name: echo, port: 80, filters: [{type: URLRewrite,
			requestHeaderModifier: {set: [{name: x-a, value: x}]}}]}]}]}`,
	} {
		u := unstructuredYAML(t, `{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: r, namespace: mesh}, spec: `+spec+`}`)
		hr, ok := httpRoute(u)
		if !ok {
			t.Fatalf("%s: not an HTTPRoute", name)
		}
		if tr := TranslateHTTPRoute(hr); tr.Unsupported == "" || len(tr.Routes) != 0 {
			t.Errorf("%s: translated as supported: %+v", name, tr.Routes)
		}
	}
	for name, spec := range map[string]string{
		"header":        `{rules: [{matches: [{headers: [{name: "a b", value: x}]}], backendRefs: [{name: echo, port: 80}]}]}`,
		"header colon":  `{rules: [{matches: [{headers: [{name: "grpc:x", value: x}]}], backendRefs: [{name: echo, port: 80}]}]}`,
		"bad namespace": `{rules: [{backendRefs: [{name: echo, namespace: Bad_NS, port: 80}]}]}`,
		"backend filter of another type": `{rules: [{backendRefs: [{name: echo, port: 80, filters: [{type: RequestMirror,
			requestHeaderModifier: {set: [{name: x-a, value: x}]}, requestMirror: {backendRef: {name: audit, port: 80}}}]}]}]}`,
	} {
		u := unstructuredYAML(t, `{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute, metadata: {name: r, namespace: mesh}, spec: `+spec+`}`)
		gr, ok := grpcRoute(u)
		if !ok {
			t.Fatalf("GRPCRoute %s: not a GRPCRoute", name)
		}
		if tr := TranslateGRPCRoute(gr); tr.Unsupported == "" || len(tr.Routes) != 0 {
			t.Errorf("GRPCRoute %s: translated as supported: %+v", name, tr.Routes)
		}
	}
	// The same routes with valid values are supported: the refusals above
	// are for the values, not for the shapes.
	for kind, spec := range map[string]string{
		KindHTTPRoute: `{rules: [{matches: [{headers: [{name: x-a, value: x}]}], backendRefs: [{name: echo, namespace: other, port: 80,
			filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: x}]}}]}]}]}`,
		KindGRPCRoute: `{rules: [{matches: [{headers: [{name: x-a, value: x}]}], backendRefs: [{name: echo, namespace: other, port: 80,
			filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: x}]}}]}]}]}`,
	} {
		u := unstructuredYAML(t, `{apiVersion: gateway.networking.k8s.io/v1, kind: `+kind+`, metadata: {name: r, namespace: mesh}, spec: `+spec+`}`)
		var tr Translation
		if kind == KindGRPCRoute {
			gr, ok := grpcRoute(u)
			if !ok {
				t.Fatalf("%s: not read", kind)
			}
			tr = TranslateGRPCRoute(gr)
		} else {
			hr, ok := httpRoute(u)
			if !ok {
				t.Fatalf("%s: not read", kind)
			}
			tr = TranslateHTTPRoute(hr)
		}
		if tr.Unsupported != "" || len(tr.Routes) != 1 {
			t.Errorf("%s with valid values: unsupported %q, %d routes", kind, tr.Unsupported, len(tr.Routes))
		}
	}
}
