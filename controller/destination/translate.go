package destination

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/gamma"
)

// Route kinds (api.Route.Kind).
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
)

// Translation is what a route's spec means for proxies, read once for all
// its parents: its routes in spec order (without Consumer, and with backends
// that have no endpoints yet) and, when it cannot be honoured, why. A route
// with Unsupported set is applied nowhere: never in part, never widened.
type Translation struct {
	// Routes are one per rule match, in the order of the spec.
	Routes []api.Route
	// Unsupported says why the route is not applied ("" when it is).
	Unsupported string
	// Reason is the Accepted condition's reason when Unsupported is set:
	// UnsupportedValue, or IncompatibleFilters.
	Reason gatewayv1.RouteConditionReason
	// Backends are the Service references of its backendRefs and mirrors,
	// for the ResolvedRefs condition.
	Backends []BackendRef
}

// BackendRef is one backendRef (or mirror) of a route.
type BackendRef struct {
	// Namespace and Name of the referent (the route's namespace by default).
	Namespace, Name string
	// Port is the Service port (0 when unset).
	Port int32
	// Kind is the referent's group/kind as written ("Service" for core
	// Services); InvalidKind when it is anything else.
	Kind string
	// ServiceKind reports whether it names a core Service.
	ServiceKind bool
}

// unsupported is a translation error that makes the whole route inapplicable.
type unsupported struct {
	reason gatewayv1.RouteConditionReason
	msg    string
}

func (u *unsupported) Error() string { return u.msg }

func unsupportedf(format string, args ...any) error {
	return &unsupported{reason: gatewayv1.RouteReasonUnsupportedValue, msg: fmt.Sprintf(format, args...)}
}

// fail records err on t and drops its routes.
func (t *Translation) fail(err error) {
	t.Routes = nil
	t.Unsupported, t.Reason = err.Error(), gatewayv1.RouteReasonUnsupportedValue
	var u *unsupported
	if errors.As(err, &u) {
		t.Reason = u.reason
	}
}

// TranslateHTTPRoute reads an HTTPRoute.
func TranslateHTTPRoute(hr *gatewayv1.HTTPRoute) Translation {
	name := hr.Namespace + "/" + hr.Name
	t := Translation{Backends: httpBackendRefs(hr)}
	for i, rule := range hr.Spec.Rules {
		if err := t.httpRule(hr.Namespace, name, i, rule); err != nil {
			t.fail(err)
			return t
		}
	}
	if err := checkHeaderNames(t.Routes); err != nil {
		t.fail(err)
	}
	return t
}

// reservedHeaders may not be edited by a route: hop-by-hop headers (they
// describe one connection, and the mesh's HTTP/2 hop refuses them), Host
// (URLRewrite's hostname changes it) and the mesh's own (meshctl-*).
var reservedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Upgrade": true, "Te": true, "Trailer": true, "Host": true, "Content-Length": true,
}

// ruleBackend is a rule's backendRef, HTTP or gRPC alike.
type ruleBackend struct {
	ref     gatewayv1.BackendObjectReference
	weight  *int32
	filters []backendFilter
}

// backendFilter is a backendRef's filter: only header modifiers are
// supported there.
type backendFilter struct {
	typ            string
	headerModifier bool // a RequestHeaderModifier
	headers        *gatewayv1.HTTPHeaderFilter
}

// translateBackends translates a rule's backendRefs (read turns each into a
// ruleBackend).
func translateBackends[R any](t *Translation, ns string, i int, refs []R, read func(R) ruleBackend) ([]api.Backend, error) {
	out := []api.Backend{}
	for j, r := range refs {
		ref := read(r)
		b, err := t.backend(ns, ref.ref, ref.weight)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].backendRefs[%d]: %w", i, j, err)
		}
		for k, f := range ref.filters {
			if !f.headerModifier || f.headers == nil {
				return nil, unsupportedf("rules[%d].backendRefs[%d].filters[%d]: only RequestHeaderModifier is supported on a backend, not %s", i, j, k, f.typ)
			}
			b.RequestHeaders = mergeEdit(b.RequestHeaders, headerEdit(f.headers))
		}
		out = append(out, b)
	}
	return out, nil
}

// addMatches adds one route per match of rule i (one matching every
// request when there is none), each a copy of base with its match.
func addMatches[M any](t *Translation, i int, base api.Route, matches []M, match func(j int, m M) (api.RouteMatch, error)) error {
	if len(matches) == 0 {
		matches = make([]M, 1)
	}
	for j, m := range matches {
		rm, err := match(j, m)
		if err != nil {
			return fmt.Errorf("rules[%d].matches[%d]: %w", i, j, err)
		}
		r := base
		r.Match = rm
		t.Routes = append(t.Routes, r)
	}
	return nil
}

// checkHeaderNames refuses header edits of reserved names.
func checkHeaderNames(routes []api.Route) error {
	check := func(where string, e *api.HeaderEdit) error {
		if e == nil {
			return nil
		}
		names := e.Remove
		for _, h := range append(append([]api.Header{}, e.Set...), e.Add...) {
			names = append(names, h.Name)
		}
		for _, n := range names {
			if !httpguts.ValidHeaderFieldName(n) {
				return unsupportedf("%s: %q is not an HTTP header name", where, n)
			}
			c := http.CanonicalHeaderKey(n)
			if reservedHeaders[c] || strings.HasPrefix(c, "Meshctl-") {
				return unsupportedf("%s: the header %s may not be edited by a route (hop-by-hop, Host or the mesh's own)", where, n)
			}
		}
		return nil
	}
	for _, r := range routes {
		if err := cmp.Or(check("request headers", r.RequestHeaders), check("response headers", r.ResponseHeaders)); err != nil {
			return err
		}
		for _, b := range r.Backends {
			if err := check("backend "+b.Service+" request headers", b.RequestHeaders); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *Translation) httpRule(ns, name string, i int, rule gatewayv1.HTTPRouteRule) error {
	if rule.SessionPersistence != nil {
		return unsupportedf("rules[%d].sessionPersistence is not supported", i)
	}
	base := api.Route{Name: name, Kind: KindHTTPRoute}
	if rule.Name != nil {
		base.Rule = string(*rule.Name)
	}
	prefixRewrite := false
	for j, f := range rule.Filters {
		if err := t.httpFilter(ns, &base, f); err != nil {
			return fmt.Errorf("rules[%d].filters[%d]: %w", i, j, err)
		}
		if pm := pathModifierOf(f); pm != nil && pm.Type == gatewayv1.PrefixMatchHTTPPathModifier {
			prefixRewrite = true
		}
	}
	if base.Redirect != nil && base.Rewrite != nil {
		return &unsupported{reason: gatewayv1.RouteReasonIncompatibleFilters, msg: fmt.Sprintf("rules[%d]: RequestRedirect and URLRewrite cannot be combined", i)}
	}
	if rule.Timeouts != nil {
		to, err := timeouts(rule.Timeouts)
		if err != nil {
			return fmt.Errorf("rules[%d].timeouts: %w", i, err)
		}
		base.Timeouts = to
	}
	if rule.Retry != nil {
		r, err := retry(rule.Retry)
		if err != nil {
			return fmt.Errorf("rules[%d].retry: %w", i, err)
		}
		base.Retry = r
	}
	backends, err := translateBackends(t, ns, i, rule.BackendRefs, func(ref gatewayv1.HTTPBackendRef) ruleBackend {
		b := ruleBackend{ref: ref.BackendObjectReference, weight: ref.Weight}
		for _, f := range ref.Filters {
			b.filters = append(b.filters, backendFilter{typ: string(f.Type), headers: f.RequestHeaderModifier,
				headerModifier: f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier})
		}
		return b
	})
	if err != nil {
		return err
	}
	base.Backends = backends
	return addMatches(t, i, base, rule.Matches, func(_ int, m gatewayv1.HTTPRouteMatch) (api.RouteMatch, error) {
		rm, err := httpMatch(m, prefixRewrite)
		if err == nil && prefixRewrite && rm.PathType != "PathPrefix" {
			return rm, unsupportedf("ReplacePrefixMatch needs a PathPrefix match")
		}
		return rm, err
	})
}

func pathModifierOf(f gatewayv1.HTTPRouteFilter) *gatewayv1.HTTPPathModifier {
	switch {
	case f.RequestRedirect != nil:
		return f.RequestRedirect.Path
	case f.URLRewrite != nil:
		return f.URLRewrite.Path
	}
	return nil
}

// httpFilter applies one rule-level filter to r.
func (t *Translation) httpFilter(ns string, r *api.Route, f gatewayv1.HTTPRouteFilter) error {
	switch {
	case f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
		r.RequestHeaders = mergeEdit(r.RequestHeaders, headerEdit(f.RequestHeaderModifier))
	case f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
		r.ResponseHeaders = mergeEdit(r.ResponseHeaders, headerEdit(f.ResponseHeaderModifier))
	case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
		rd, err := redirect(f.RequestRedirect)
		if err != nil {
			return err
		}
		r.Redirect = rd
	case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
		rw := &api.Rewrite{}
		if f.URLRewrite.Hostname != nil {
			rw.Hostname = string(*f.URLRewrite.Hostname)
		}
		if f.URLRewrite.Path != nil {
			pm, err := pathModifier(f.URLRewrite.Path)
			if err != nil {
				return err
			}
			rw.Path = pm
		}
		r.Rewrite = rw
	case f.Type == gatewayv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil:
		m, err := t.mirror(ns, f.RequestMirror)
		if err != nil {
			return err
		}
		r.Mirrors = appendMirror(r.Mirrors, m)
	default:
		return unsupportedf("filter %s is not supported", f.Type)
	}
	return nil
}

// appendMirror adds a mirror that mirrors something: on the wire a share
// of 0 reads as unset (every request).
func appendMirror(ms []api.Mirror, m api.Mirror) []api.Mirror {
	if m.PerMillion == 0 {
		return ms
	}
	return append(ms, m)
}

// mirror translates a RequestMirror filter. Its share is carried in parts
// per million: a fraction rounds to the nearest, but one that mirrors
// anything mirrors at least a millionth (only a numerator of 0, or a
// percent of 0, mirrors nothing). The legacy Percent goes with it for the
// proxies of the previous release (api.Mirror.SetShare).
func (t *Translation) mirror(ns string, m *gatewayv1.HTTPRequestMirrorFilter) (api.Mirror, error) {
	b, err := t.backend(ns, m.BackendRef, nil)
	if err != nil {
		return api.Mirror{}, err
	}
	out := api.Mirror{Backend: b, PerMillion: api.PerMillionAll}
	switch {
	case m.Percent != nil && m.Fraction != nil:
		return out, unsupportedf("a mirror takes percent or fraction, not both")
	case m.Percent != nil:
		if p := *m.Percent; p < 0 || p > 100 {
			return out, unsupportedf("mirror percent %d is not within 0–100", p)
		}
		out.PerMillion = int(*m.Percent) * (api.PerMillionAll / 100)
	case m.Fraction != nil:
		den := int32(100)
		if m.Fraction.Denominator != nil {
			den = *m.Fraction.Denominator
		}
		if den <= 0 || m.Fraction.Numerator < 0 || m.Fraction.Numerator > den {
			return out, unsupportedf("mirror fraction %d/%d is not within 0–1", m.Fraction.Numerator, den)
		}
		num := int64(m.Fraction.Numerator)
		out.PerMillion = int((num*api.PerMillionAll + int64(den)/2) / int64(den))
		if num > 0 {
			out.PerMillion = max(out.PerMillion, 1)
		}
	}
	out.SetShare(out.PerMillion) // and the legacy percent
	return out, nil
}

// readBackendRef reads a reference to a backend.
func readBackendRef(ns string, ref gatewayv1.BackendObjectReference) BackendRef {
	br := BackendRef{Namespace: ns, Name: string(ref.Name), ServiceKind: gamma.IsService(ref.Group, ref.Kind, "Service"), Kind: "Service"}
	if ref.Namespace != nil {
		br.Namespace = string(*ref.Namespace)
	}
	if ref.Kind != nil {
		br.Kind = string(*ref.Kind)
	}
	if ref.Group != nil && *ref.Group != "" {
		br.Kind = string(*ref.Group) + "/" + br.Kind
	}
	if ref.Port != nil {
		br.Port = int32(*ref.Port)
	}
	return br
}

// httpBackendRefs lists every backend an HTTPRoute names, mirrors included,
// whether or not the route is supported.
func httpBackendRefs(hr *gatewayv1.HTTPRoute) []BackendRef {
	var out []BackendRef
	for _, rule := range hr.Spec.Rules {
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				out = append(out, readBackendRef(hr.Namespace, f.RequestMirror.BackendRef))
			}
		}
		for _, ref := range rule.BackendRefs {
			out = append(out, readBackendRef(hr.Namespace, ref.BackendObjectReference))
		}
	}
	return out
}

// backend translates a backendRef. A
// reference to something other than a Service stays a backend (it takes
// its share of requests, which fail) named "" with no endpoints.
// Services of other namespaces need no ReferenceGrant in a mesh (GEP-1294).
func (t *Translation) backend(ns string, ref gatewayv1.BackendObjectReference, weight *int32) (api.Backend, error) {
	b := api.Backend{Weight: 1, Endpoints: []api.Endpoint{}}
	if weight != nil {
		b.Weight = int(*weight)
	}
	if b.Weight < 0 {
		return b, unsupportedf("weight %d is negative", b.Weight)
	}
	br := readBackendRef(ns, ref)
	if !br.ServiceKind {
		return b, nil
	}
	if ref.Port == nil {
		return b, unsupportedf("backendRef %s has no port", br.Name)
	}
	// The API server's schema checks these; a route that reached the
	// controller some other way must not name an ambiguous Service.
	if br.Port < 1 || br.Port > 65535 {
		return b, unsupportedf("backendRef %s has port %d, not within 1–65535", br.Name, br.Port)
	}
	if errs := validation.IsDNS1035Label(br.Name); len(errs) > 0 {
		return b, unsupportedf("backendRef name %q is not a Service name", br.Name)
	}
	if errs := validation.IsDNS1123Label(br.Namespace); len(errs) > 0 {
		return b, unsupportedf("backendRef namespace %q is not a namespace name", br.Namespace)
	}
	b.Service = br.Name + "." + br.Namespace + ":" + strconv.Itoa(int(br.Port))
	return b, nil
}

// httpMatch translates a match. keepRoot keeps a PathPrefix "/" explicit
// (a ReplacePrefixMatch needs the prefix it replaces).
func httpMatch(m gatewayv1.HTTPRouteMatch, keepRoot bool) (api.RouteMatch, error) {
	var out api.RouteMatch
	out.Path, out.PathType = "/", "PathPrefix"
	if m.Path != nil {
		if m.Path.Value != nil {
			out.Path = *m.Path.Value
		}
		if m.Path.Type != nil {
			switch *m.Path.Type {
			case gatewayv1.PathMatchExact:
				out.PathType = "Exact"
			case gatewayv1.PathMatchPathPrefix:
			default:
				return out, unsupportedf("path match type %s is not supported", *m.Path.Type)
			}
		}
	}
	if !strings.HasPrefix(out.Path, "/") {
		return out, unsupportedf("path %q does not start with /", out.Path)
	}
	if !keepRoot && out.PathType == "PathPrefix" && out.Path == "/" {
		out.Path, out.PathType = "", "" // every path
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gatewayv1.HeaderMatchExact {
			return out, unsupportedf("header match type %s is not supported", *h.Type)
		}
		if !httpguts.ValidHeaderFieldName(string(h.Name)) {
			return out, unsupportedf("header name %q is not an HTTP token", h.Name)
		}
		out.Headers = append(out.Headers, api.HeaderMatch{Name: string(h.Name), Value: h.Value})
	}
	for _, q := range m.QueryParams {
		if q.Type != nil && *q.Type != gatewayv1.QueryParamMatchExact {
			return out, unsupportedf("query parameter match type %s is not supported", *q.Type)
		}
		out.QueryParams = append(out.QueryParams, api.HeaderMatch{Name: string(q.Name), Value: q.Value})
	}
	if m.Method != nil {
		out.Method = string(*m.Method)
	}
	return out, nil
}

func headerEdit(f *gatewayv1.HTTPHeaderFilter) *api.HeaderEdit {
	e := &api.HeaderEdit{Remove: f.Remove}
	for _, h := range f.Set {
		e.Set = append(e.Set, api.Header{Name: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Add {
		e.Add = append(e.Add, api.Header{Name: string(h.Name), Value: h.Value})
	}
	return e
}

// mergeEdit joins two edits of the same headers (two filters of a type are
// refused by the API server; backend filters may still repeat).
func mergeEdit(a, b *api.HeaderEdit) *api.HeaderEdit {
	if a == nil {
		return b
	}
	return &api.HeaderEdit{Set: append(a.Set, b.Set...), Add: append(a.Add, b.Add...), Remove: append(a.Remove, b.Remove...)}
}

// redirect translates a RequestRedirect filter.
func redirect(f *gatewayv1.HTTPRequestRedirectFilter) (*api.Redirect, error) {
	out := &api.Redirect{StatusCode: 302}
	if f.Scheme != nil {
		if *f.Scheme != "http" && *f.Scheme != "https" {
			return nil, unsupportedf("redirect scheme %q is not http or https", *f.Scheme)
		}
		out.Scheme = *f.Scheme
	}
	if f.Hostname != nil {
		out.Hostname = string(*f.Hostname)
	}
	if f.Port != nil {
		if *f.Port < 1 || *f.Port > 65535 {
			return nil, unsupportedf("redirect port %d is not a port", *f.Port)
		}
		out.Port = int(*f.Port)
	}
	if f.StatusCode != nil {
		switch *f.StatusCode {
		case 301, 302, 303, 307, 308:
			out.StatusCode = *f.StatusCode
		default:
			return nil, unsupportedf("redirect status %d is not 301, 302, 303, 307 or 308", *f.StatusCode)
		}
	}
	if f.Path != nil {
		pm, err := pathModifier(f.Path)
		if err != nil {
			return nil, err
		}
		out.Path = pm
	}
	return out, nil
}

func pathModifier(p *gatewayv1.HTTPPathModifier) (*api.PathModifier, error) {
	switch {
	case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
		return &api.PathModifier{Type: string(p.Type), Value: *p.ReplaceFullPath}, nil
	case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
		return &api.PathModifier{Type: string(p.Type), Value: *p.ReplacePrefixMatch}, nil
	}
	return nil, unsupportedf("path modifier %s without its value is not supported", p.Type)
}

// duration reads a Gateway API duration ("1h2m3s4ms"); "0s" is no bound.
func duration(d gatewayv1.Duration) (int64, error) {
	v, err := time.ParseDuration(string(d))
	switch {
	case err != nil || v < 0:
		return 0, unsupportedf("duration %q is not valid", d)
	case v == 0:
		return -1, nil // "0s": no timeout (api.RouteTimeouts)
	}
	return max(v.Milliseconds(), 1), nil
}

func timeouts(t *gatewayv1.HTTPRouteTimeouts) (*api.RouteTimeouts, error) {
	out := &api.RouteTimeouts{}
	var err error
	if t.Request != nil {
		if out.RequestMs, err = duration(*t.Request); err != nil {
			return nil, err
		}
	}
	if t.BackendRequest != nil {
		if out.BackendRequestMs, err = duration(*t.BackendRequest); err != nil {
			return nil, err
		}
	}
	if out.RequestMs > 0 && out.BackendRequestMs > out.RequestMs {
		return nil, unsupportedf("backendRequest %dms is longer than request %dms", out.BackendRequestMs, out.RequestMs)
	}
	return out, nil
}

func retry(r *gatewayv1.HTTPRouteRetry) (*api.RouteRetry, error) {
	out := &api.RouteRetry{}
	for _, c := range r.Codes {
		if c < 400 || c > 599 {
			return nil, unsupportedf("retry code %d is not within 400–599", c)
		}
		out.Codes = append(out.Codes, int(c))
	}
	if r.Attempts != nil {
		if *r.Attempts < 0 {
			return nil, unsupportedf("retry attempts %d is negative", *r.Attempts)
		}
		out.Attempts = *r.Attempts
	}
	if r.Backoff != nil {
		ms, err := duration(*r.Backoff)
		if err != nil {
			return nil, err
		}
		out.BackoffMs = ms
	}
	return out, nil
}
