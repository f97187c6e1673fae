package endpoints

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/retry"
)

// Route takes the requests it matches (an HTTPRoute or GRPCRoute rule's
// match attached to the destination's Service): it may edit them, answer
// them with a redirect, copy them to mirrors, and sends them to its
// backends by weight.
type Route struct {
	// Name is the route's namespace/name.
	Name string
	// Match says which requests it takes.
	Match api.RouteMatch
	// RequestHeaders edits the request's headers before it is sent; nil: none.
	RequestHeaders *api.HeaderEdit
	// ResponseHeaders edits the answer's headers; nil: none.
	ResponseHeaders *api.HeaderEdit
	// Redirect, when set, answers the request from the client's proxy.
	Redirect *api.Redirect
	// Rewrite rewrites the request's host or path before it is sent; nil: none.
	Rewrite *api.Rewrite
	// Mirrors get fire-and-forget copies of the requests.
	Mirrors []Mirror
	// RequestTimeout bounds the whole request, retries included; 0: the
	// Service's policy decides; negative: no bound at all.
	RequestTimeout time.Duration
	// TryTimeout bounds each try; 0: the Service's policy decides;
	// negative: no bound at all.
	TryTimeout time.Duration
	// Retry, when set, replaces the Service's retry conditions and limit.
	Retry *RouteRetry
	// Backends share its requests.
	Backends []Backend
}

// RouteRetry is what a route retries (it replaces the Service's retry
// annotations, their method rule included: it retries every method; the
// Service's retry budget still applies).
type RouteRetry struct {
	// HTTP are the statuses retried.
	HTTP []retry.StatusRange
	// Limit is the most retries after the first try.
	Limit int
	// Backoff is the wait before each retry.
	Backoff time.Duration
}

// Backend is one Service of a route, with its share.
type Backend struct {
	// Name is the Service, "name.namespace:port".
	Name string
	// Weight is its share relative to the route's other backends.
	Weight int
	// RequestHeaders edits the requests sent to it, after the route's own
	// edits; nil: none.
	RequestHeaders *api.HeaderEdit
	// Set is its endpoints, balanced like any destination's.
	Set *Set
	// Invalid says the reference names no Service port: the requests it
	// takes get 500 (the Gateway API's answer for an invalid backend).
	Invalid bool
}

// Mirror is a backend that gets copies of a route's requests.
type Mirror struct {
	// Backend is where the copies go (its weight is unused).
	Backend Backend
	// PerMillion is the share of the requests copied, in parts per
	// million, 1–api.PerMillionAll.
	PerMillion int
}

// BackendSpec is a backend as discovery describes it.
type BackendSpec struct {
	Name           string
	Weight         int
	RequestHeaders *api.HeaderEdit
	Endpoints      []Endpoint
	// Invalid: the reference names no Service port (api.Backend.Invalid).
	Invalid bool
}

// MirrorSpec is a mirror as discovery describes it; PerMillion (parts per
// million, api.Mirror.Share: the wire's per_million, or the legacy percent
// of an older controller) 0 means every request.
type MirrorSpec struct {
	Backend    BackendSpec
	PerMillion int
}

// RouteSpec is a route as discovery describes it: the wire route, its
// backends' and mirrors' endpoints translated.
type RouteSpec struct {
	Name            string
	Match           api.RouteMatch
	RequestHeaders  *api.HeaderEdit
	ResponseHeaders *api.HeaderEdit
	Redirect        *api.Redirect
	Rewrite         *api.Rewrite
	Timeouts        *api.RouteTimeouts
	Retry           *api.RouteRetry
	Mirrors         []MirrorSpec
	Backends        []BackendSpec
}

// SetRoutes replaces the destination's routes; backends and mirrors keep
// their balancing state across updates (by Service name).
func (s *Set) SetRoutes(specs []RouteSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	keep := map[string]*Set{}
	for _, r := range old.routes {
		for _, b := range r.Backends {
			keep[b.Name] = b.Set
		}
		for _, m := range r.Mirrors {
			keep[m.Backend.Name] = m.Backend.Set
		}
	}
	backend := func(b BackendSpec) Backend {
		set := keep[b.Name]
		if set == nil {
			set = NewSet()
			keep[b.Name] = set // one set per Service, however many routes name it
		}
		set.Update(b.Endpoints)
		set.SetPolicy(b.Name, *old.policy)
		return Backend{Name: b.Name, Weight: max(b.Weight, 0), RequestHeaders: emptyEdit(b.RequestHeaders), Set: set, Invalid: b.Invalid}
	}
	routes := make([]Route, len(specs))
	for i, spec := range specs {
		r := Route{
			Name: spec.Name, Match: canonical(spec.Match), Redirect: spec.Redirect, Rewrite: spec.Rewrite,
			RequestHeaders: emptyEdit(spec.RequestHeaders), ResponseHeaders: emptyEdit(spec.ResponseHeaders),
			Backends: make([]Backend, len(spec.Backends)),
		}
		if r.Rewrite != nil && r.Rewrite.Hostname == "" && r.Rewrite.Path == nil {
			r.Rewrite = nil
		}
		if t := spec.Timeouts; t != nil {
			r.RequestTimeout = time.Duration(max(t.RequestMs, -1)) * time.Millisecond
			r.TryTimeout = time.Duration(max(t.BackendRequestMs, -1)) * time.Millisecond
		}
		if rt := spec.Retry; rt != nil {
			r.Retry = &RouteRetry{Limit: max(rt.Attempts, 0), Backoff: time.Duration(max(rt.BackoffMs, 0)) * time.Millisecond}
			for _, c := range rt.Codes {
				r.Retry.HTTP = append(r.Retry.HTTP, retry.StatusRange{From: c, To: c})
			}
		}
		for j, b := range spec.Backends {
			r.Backends[j] = backend(b)
		}
		for _, m := range spec.Mirrors {
			share := m.PerMillion
			if share == 0 {
				share = api.PerMillionAll
			}
			if share < 0 {
				continue
			}
			r.Mirrors = append(r.Mirrors, Mirror{Backend: backend(m.Backend), PerMillion: min(share, api.PerMillionAll)})
		}
		routes[i] = r
	}
	next := *old
	next.changed = make(chan struct{})
	next.routes = routes
	next.budget = budgetFor(old.budget, *old.policy, routes)
	s.swap(old, &next)
}

// canonical returns m with its header names in canonical form, so that
// matching a request looks them up without converting them each time.
func canonical(m api.RouteMatch) api.RouteMatch {
	if len(m.Headers) == 0 {
		return m
	}
	hs := make([]api.HeaderMatch, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = api.HeaderMatch{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value}
	}
	m.Headers = hs
	return m
}

// emptyEdit is nil for an edit that changes nothing, so that requests of
// routes without filters skip them.
func emptyEdit(e *api.HeaderEdit) *api.HeaderEdit {
	if e == nil || len(e.Set)+len(e.Add)+len(e.Remove) == 0 {
		return nil
	}
	return e
}

// Routes returns the destination's routes.
func (s *Set) Routes() []Route { return s.st.Load().routes }

// Route returns the route a request takes: the first that matches it. It
// returns nil, true when the destination has no route (the request goes
// to the set itself), and nil, false when it has routes and none matches
// (the request must be refused: 404).
func (s *Set) Route(r *http.Request) (route *Route, found bool) {
	routes := s.st.Load().routes
	if len(routes) == 0 {
		return nil, true
	}
	for i := range routes {
		if matches(routes[i].Match, r.Method, r.URL, r.Header) {
			return &routes[i], true
		}
	}
	return nil, false
}

// Choose picks a backend by weight; nil when none weighs anything.
func (r *Route) Choose() *Backend { return r.choose(rand.IntN) }

// choose picks a backend by weight, nil when none weighs anything; intN
// draws from [0, n).
func (r *Route) choose(intN func(int) int) *Backend {
	total := 0
	for _, b := range r.Backends {
		total += b.Weight
	}
	if total == 0 {
		return nil
	}
	n := intN(total)
	for i := range r.Backends {
		b := &r.Backends[i]
		if n < b.Weight {
			return b
		}
		n -= b.Weight
	}
	return nil // unreachable
}

// matches reports whether a request matches m; the zero RouteMatch matches
// every request. A path prefix matches whole segments.
func matches(m api.RouteMatch, method string, u *url.URL, header http.Header) bool {
	if m.Method != "" && m.Method != method {
		return false
	}
	switch m.PathType {
	case "Exact":
		if u.Path != m.Path {
			return false
		}
	case "PathPrefix":
		if _, ok := PrefixRest(m.Path, u.Path); !ok {
			return false
		}
	}
	for _, h := range m.Headers {
		// Names are canonical already (SetRoutes); the first value counts.
		// A header that is absent never matches, not even an empty value.
		if vv := header[h.Name]; len(vv) == 0 || vv[0] != h.Value {
			if vv := header.Values(h.Name); len(vv) == 0 || vv[0] != h.Value { // a name canonical() did not see
				return false
			}
		}
	}
	for _, q := range m.QueryParams {
		if v, ok := firstQueryValue(u.RawQuery, q.Name); !ok || v != q.Value {
			return false
		}
	}
	return true
}

// PrefixRest matches path against prefix by whole segments ("/v2" takes
// "/v2" and "/v2/x", never "/v2example") and returns what follows the
// prefix: "" or a path starting with "/".
func PrefixRest(prefix, path string) (rest string, ok bool) {
	prefix = strings.TrimSuffix(prefix, "/")
	switch {
	case prefix == "":
		return path, true
	case path == prefix:
		return "", true
	case strings.HasPrefix(path, prefix) && path[len(prefix)] == '/':
		return path[len(prefix):], true
	}
	return "", false
}

// firstQueryValue returns the first value of the query parameter name
// (case-sensitive, unescaped) in a raw query, without parsing all of it.
func firstQueryValue(raw, name string) (string, bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return "", false
			}
			v = uv
		}
		return v, true
	}
	return "", false
}
