package destination

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/api"
)

// FuzzTranslateRoutes feeds routes decoded from arbitrary JSON to both
// translations and checks what must hold of every translation (oracle):
// see checkTranslation.
func FuzzTranslateRoutes(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/routes/*.yaml")
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		var hr gatewayv1.HTTPRoute
		if json.Unmarshal(js, &hr) == nil {
			tr := TranslateHTTPRoute(&hr)
			checkTranslation(t, tr, TranslateHTTPRoute(&hr), fuzzRoute{kind: KindHTTPRoute, name: hr.Namespace + "/" + hr.Name, routes: httpRouteCount(hr), valid: httpRouteValid(hr)})
		}
		var gr gatewayv1.GRPCRoute
		if json.Unmarshal(js, &gr) == nil {
			tr := TranslateGRPCRoute(&gr)
			checkTranslation(t, tr, TranslateGRPCRoute(&gr), fuzzRoute{kind: KindGRPCRoute, name: gr.Namespace + "/" + gr.Name, routes: grpcRouteCount(gr), valid: grpcRouteValid(gr)})
		}
	})
}

// fuzzRoute is what the oracle knows of the translated route's input.
type fuzzRoute struct {
	kind, name string
	// routes is how many routes a supported translation has: one per
	// match, and one for a rule without matches.
	routes int
	// valid: the input keeps the API server's validation (CRD schema) of
	// what the translation copies without checking: paths start with "/",
	// header names are tokens, backend ports are ports. The translation
	// relies on the API server for those, so only then must its output
	// have them right.
	valid bool
}

func httpRouteCount(hr gatewayv1.HTTPRoute) int {
	n := 0
	for _, r := range hr.Spec.Rules {
		n += max(len(r.Matches), 1)
	}
	return n
}

func grpcRouteCount(gr gatewayv1.GRPCRoute) int {
	n := 0
	for _, r := range gr.Spec.Rules {
		n += max(len(r.Matches), 1)
	}
	return n
}

// headerName is the CRD's pattern of an HTTP header name (a token).
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")

func validPort(p *gatewayv1.PortNumber) bool { return p == nil || (*p >= 1 && *p <= 65535) }

func validHeaderFilter(f *gatewayv1.HTTPHeaderFilter) bool {
	if f == nil {
		return true
	}
	for _, h := range append(append([]gatewayv1.HTTPHeader{}, f.Set...), f.Add...) {
		if !headerName.MatchString(string(h.Name)) {
			return false
		}
	}
	for _, n := range f.Remove {
		if !headerName.MatchString(n) {
			return false
		}
	}
	return true
}

// httpRouteValid reports whether an HTTPRoute keeps the CRD's rules the
// oracle's strict checks depend on (see fuzzRoute.valid).
func httpRouteValid(hr gatewayv1.HTTPRoute) bool {
	for _, r := range hr.Spec.Rules {
		for _, m := range r.Matches {
			if m.Path != nil && m.Path.Value != nil && !strings.HasPrefix(*m.Path.Value, "/") {
				return false
			}
			for _, h := range m.Headers {
				if !headerName.MatchString(string(h.Name)) {
					return false
				}
			}
		}
		for _, f := range r.Filters {
			if !validHeaderFilter(f.RequestHeaderModifier) || !validHeaderFilter(f.ResponseHeaderModifier) {
				return false
			}
			if f.RequestMirror != nil && !validPort(f.RequestMirror.BackendRef.Port) {
				return false
			}
		}
		for _, b := range r.BackendRefs {
			if !validPort(b.Port) {
				return false
			}
			for _, f := range b.Filters {
				if !validHeaderFilter(f.RequestHeaderModifier) {
					return false
				}
			}
		}
	}
	return true
}

// grpcRouteValid is httpRouteValid for a GRPCRoute.
func grpcRouteValid(gr gatewayv1.GRPCRoute) bool {
	for _, r := range gr.Spec.Rules {
		for _, m := range r.Matches {
			for _, h := range m.Headers {
				if !headerName.MatchString(string(h.Name)) {
					return false
				}
			}
		}
		for _, f := range r.Filters {
			if !validHeaderFilter(f.RequestHeaderModifier) || !validHeaderFilter(f.ResponseHeaderModifier) {
				return false
			}
			if f.RequestMirror != nil && !validPort(f.RequestMirror.BackendRef.Port) {
				return false
			}
		}
		for _, b := range r.BackendRefs {
			if !validPort(b.Port) {
				return false
			}
			for _, f := range b.Filters {
				if !validHeaderFilter(f.RequestHeaderModifier) {
					return false
				}
			}
		}
	}
	return true
}

// checkTranslation is the oracle: tr and again are two translations of
// the same input.
//   - Translating is deterministic.
//   - An unsupported route has a reason (UnsupportedValue or
//     IncompatibleFilters) and no routes; a supported one has one route
//     per match (per rule without matches), each named and of its kind.
//   - Routes survive JSON (the wire to the proxies) unchanged.
//   - Every backend has a weight ≥ 0 and is "name.ns:port" (or "" for a
//     reference to something other than a Service); redirects have a
//     status of 301, 302, 303, 307 or 308 and a port within 0–65535;
//     path matches are Exact or PathPrefix with a value starting with
//     "/", or neither with none; a PathPrefix "/" with no prefix rewrite
//     is no path match; mirror shares are within range.
//   - For inputs the API server accepts (fuzzRoute.valid): backend ports
//     are within 1–65535 and header names are tokens.
func checkTranslation(t *testing.T, tr, again Translation, in fuzzRoute) {
	t.Helper()
	if !reflect.DeepEqual(tr, again) {
		t.Fatalf("two translations of one input differ:\n%+v\n%+v", tr, again)
	}
	if tr.Unsupported != "" {
		if len(tr.Routes) != 0 || (tr.Reason != gatewayv1.RouteReasonUnsupportedValue && tr.Reason != gatewayv1.RouteReasonIncompatibleFilters) {
			t.Fatalf("unsupported (%s) with %d routes, reason %q", tr.Unsupported, len(tr.Routes), tr.Reason)
		}
		return
	}
	if tr.Reason != "" {
		t.Errorf("supported with reason %q", tr.Reason)
	}
	if len(tr.Routes) != in.routes {
		t.Fatalf("supported with %d routes for %d matches", len(tr.Routes), in.routes)
	}
	js, err := json.Marshal(tr.Routes)
	if err != nil {
		t.Fatalf("routes do not marshal: %v", err)
	}
	var back []api.Route
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("routes do not unmarshal: %v\n%s", err, js)
	}
	if !reflect.DeepEqual(emptyToNil(tr.Routes), emptyToNil(back)) {
		t.Errorf("routes change through JSON:\n%+v\n%+v", tr.Routes, back)
	}
	for i, r := range tr.Routes {
		if r.Name != in.name || r.Kind != in.kind || r.Consumer != "" {
			t.Errorf("routes[%d]: name %q kind %q consumer %q, want %q %q and none", i, r.Name, r.Kind, r.Consumer, in.name, in.kind)
		}
		checkMatch(t, i, r, in)
		if r.Backends == nil {
			t.Errorf("routes[%d]: nil backends (null on the wire)", i)
		}
		for _, b := range r.Backends {
			checkBackend(t, i, b, in)
		}
		for _, m := range r.Mirrors {
			checkBackend(t, i, m.Backend, in)
			checkMirrorShare(t, i, m)
		}
		if rd := r.Redirect; rd != nil {
			switch rd.StatusCode {
			case 301, 302, 303, 307, 308:
			default:
				t.Errorf("routes[%d]: redirect status %d", i, rd.StatusCode)
			}
			if rd.Port < 0 || rd.Port > 65535 || (rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https") {
				t.Errorf("routes[%d]: redirect port %d scheme %q", i, rd.Port, rd.Scheme)
			}
			checkPathModifier(t, i, rd.Path)
		}
		if rd := r.Rewrite; rd != nil {
			checkPathModifier(t, i, rd.Path)
		}
		if r.Redirect != nil && r.Rewrite != nil {
			t.Errorf("routes[%d]: both a redirect and a rewrite", i)
		}
		if to := r.Timeouts; to != nil && (to.RequestMs < -1 || to.BackendRequestMs < -1 || (to.RequestMs > 0 && to.BackendRequestMs > to.RequestMs)) {
			t.Errorf("routes[%d]: timeouts %+v", i, *to)
		}
		if rt := r.Retry; rt != nil {
			for _, c := range rt.Codes {
				if c < 400 || c > 599 {
					t.Errorf("routes[%d]: retry code %d", i, c)
				}
			}
			if rt.Attempts < 0 || rt.BackoffMs < -1 {
				t.Errorf("routes[%d]: retry %+v", i, *rt)
			}
		}
		if in.valid {
			for _, e := range []*api.HeaderEdit{r.RequestHeaders, r.ResponseHeaders} {
				checkHeaderEdit(t, i, e)
			}
			for _, h := range r.Match.Headers {
				if !headerName.MatchString(h.Name) {
					t.Errorf("routes[%d]: header match name %q is not a token", i, h.Name)
				}
			}
		}
	}
}

func checkMatch(t *testing.T, i int, r api.Route, in fuzzRoute) {
	t.Helper()
	m := r.Match
	switch m.PathType {
	case "":
		if m.Path != "" {
			t.Errorf("routes[%d]: path %q without a type", i, m.Path)
		}
	case "Exact", "PathPrefix":
		// A GRPCRoute's paths are made of "/"; an HTTPRoute's are the
		// spec's, which the API server makes start with "/".
		if (in.kind == KindGRPCRoute || in.valid) && !strings.HasPrefix(m.Path, "/") {
			t.Errorf("routes[%d]: %s path %q does not start with /", i, m.PathType, m.Path)
		}
		prefixRewrite := false
		for _, pm := range []*api.PathModifier{redirectPath(r.Redirect), rewritePath(r.Rewrite)} {
			prefixRewrite = prefixRewrite || (pm != nil && pm.Type == string(gatewayv1.PrefixMatchHTTPPathModifier))
		}
		if m.PathType == "PathPrefix" && m.Path == "/" && !prefixRewrite {
			t.Errorf("routes[%d]: PathPrefix / kept without a prefix rewrite (it is no path match)", i)
		}
	default:
		t.Errorf("routes[%d]: path type %q", i, m.PathType)
	}
}

func redirectPath(r *api.Redirect) *api.PathModifier {
	if r == nil {
		return nil
	}
	return r.Path
}

func rewritePath(r *api.Rewrite) *api.PathModifier {
	if r == nil {
		return nil
	}
	return r.Path
}

func checkPathModifier(t *testing.T, i int, pm *api.PathModifier) {
	t.Helper()
	if pm != nil && pm.Type != string(gatewayv1.FullPathHTTPPathModifier) && pm.Type != string(gatewayv1.PrefixMatchHTTPPathModifier) {
		t.Errorf("routes[%d]: path modifier type %q", i, pm.Type)
	}
}

// backendService is what a backend's Service must look like: name.ns:port.
var backendService = regexp.MustCompile(`^([^.:]*)\.([^:]*):(-?[0-9]+)$`)

func checkBackend(t *testing.T, i int, b api.Backend, in fuzzRoute) {
	t.Helper()
	if b.Weight < 0 {
		t.Errorf("routes[%d]: backend %q weight %d", i, b.Service, b.Weight)
	}
	if b.Endpoints == nil || len(b.Endpoints) != 0 || b.Invalid {
		t.Errorf("routes[%d]: backend %q comes with endpoints %v, invalid %v (the watcher fills those in)", i, b.Service, b.Endpoints, b.Invalid)
	}
	if b.Service != "" {
		sm := backendService.FindStringSubmatch(b.Service)
		if sm == nil {
			t.Errorf("routes[%d]: backend Service %q is not name.ns:port", i, b.Service)
		} else if port, err := strconv.Atoi(sm[3]); in.valid && (err != nil || port < 1 || port > 65535) {
			t.Errorf("routes[%d]: backend Service %q has no port within 1–65535", i, b.Service)
		}
	}
	if in.valid {
		checkHeaderEdit(t, i, b.RequestHeaders)
	}
}

// checkMirrorShare checks a mirror's share as the wire carries it, by its
// JSON name (so that the oracle reads it whatever the field is named):
// percent, 1–100, or per_million, 1–1,000,000. A mirror of nothing is left
// out of its route, and an unset share mirrors every request.
func checkMirrorShare(t *testing.T, i int, m api.Mirror) {
	t.Helper()
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(js, &fields); err != nil {
		t.Fatal(err)
	}
	for name, most := range map[string]float64{"percent": 100, "per_million": 1_000_000} {
		if v, ok := fields[name].(float64); ok && (v < 1 || v > most) {
			t.Errorf("routes[%d]: mirror %s %v is not within 1–%v", i, name, v, most)
		}
	}
}

func checkHeaderEdit(t *testing.T, i int, e *api.HeaderEdit) {
	t.Helper()
	if e == nil {
		return
	}
	names := append([]string{}, e.Remove...)
	for _, h := range append(append([]api.Header{}, e.Set...), e.Add...) {
		names = append(names, h.Name)
	}
	for _, n := range names {
		if !headerName.MatchString(n) {
			t.Errorf("routes[%d]: header edit of %q, not a token", i, n)
		}
	}
}

// emptyToNil is routes with every empty slice nil, except Backends and
// Endpoints (the wire says [] for none): JSON's omitempty drops an empty
// slice, which comes back nil, and the proxies read both alike.
func emptyToNil(routes []api.Route) []api.Route {
	out := make([]api.Route, len(routes))
	for i, r := range routes {
		out[i] = r
		out[i].Match.Headers = nilIfEmpty(r.Match.Headers)
		out[i].Match.QueryParams = nilIfEmpty(r.Match.QueryParams)
		out[i].Mirrors = nil
		for _, m := range r.Mirrors {
			m.Backend.RequestHeaders = editNil(m.Backend.RequestHeaders)
			out[i].Mirrors = append(out[i].Mirrors, m)
		}
		out[i].RequestHeaders = editNil(r.RequestHeaders)
		out[i].ResponseHeaders = editNil(r.ResponseHeaders)
		if r.Retry != nil {
			rt := *r.Retry
			rt.Codes = nilIfEmpty(rt.Codes)
			out[i].Retry = &rt
		}
		out[i].Backends = make([]api.Backend, len(r.Backends))
		for j, b := range r.Backends {
			b.RequestHeaders = editNil(b.RequestHeaders)
			out[i].Backends[j] = b
		}
	}
	return out
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func editNil(e *api.HeaderEdit) *api.HeaderEdit {
	if e == nil {
		return nil
	}
	return &api.HeaderEdit{Set: nilIfEmpty(e.Set), Add: nilIfEmpty(e.Add), Remove: nilIfEmpty(e.Remove)}
}
