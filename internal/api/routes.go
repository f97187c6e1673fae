package api

// Route is one match of an HTTPRoute (or GRPCRoute) rule, what it does to
// the requests it takes and where it sends them.
type Route struct {
	// Name is the route's namespace/name.
	Name string `json:"name"`
	// Rule is the rule's name (rules[].name), if it has one.
	Rule string `json:"rule,omitempty"`
	// Kind is "HTTPRoute" or "GRPCRoute".
	Kind string `json:"kind,omitempty"`
	// Consumer is the namespace of a consumer route (one attached to a
	// Service of another namespace): it shapes only the requests of clients
	// in that namespace. "" for a producer route, which shapes everyone's.
	Consumer string `json:"consumer,omitempty"`
	// Match says which requests it takes.
	Match RouteMatch `json:"match"`
	// RequestHeaders edits the request's headers before it is sent
	// (RequestHeaderModifier).
	RequestHeaders *HeaderEdit `json:"request_headers,omitempty"`
	// ResponseHeaders edits the response's headers before the client gets
	// them (ResponseHeaderModifier).
	ResponseHeaders *HeaderEdit `json:"response_headers,omitempty"`
	// Redirect, when set, answers the request with a redirect from the
	// client's proxy; the request goes nowhere (RequestRedirect).
	Redirect *Redirect `json:"redirect,omitempty"`
	// Rewrite rewrites the request's host or path before it is sent
	// (URLRewrite).
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// Mirrors get a copy of each request, fire and forget: their answers,
	// failures and delays never reach the client (RequestMirror).
	Mirrors []Mirror `json:"mirrors,omitempty"`
	// Timeouts bound the request and each try (HTTPRoute timeouts); they
	// take precedence over the Service's timeout annotations.
	Timeouts *RouteTimeouts `json:"timeouts,omitempty"`
	// Retry says which answers are tried again (HTTPRoute retry, GEP-1731);
	// it takes precedence over the Service's retry annotations, and retries
	// stay within the Service's retry budget.
	Retry *RouteRetry `json:"retry,omitempty"`
	// Backends share its requests by weight. A route with no backend and no
	// redirect answers 500.
	Backends []Backend `json:"backends"`
}

// RouteMatch matches requests; its zero value matches every request.
type RouteMatch struct {
	// Path is matched as PathType says: "Exact", or "PathPrefix" (by whole
	// path segments). A GRPCRoute's method match is an exact path
	// ("/service/method") or a prefix ("/service/").
	Path     string `json:"path,omitempty"`
	PathType string `json:"path_type,omitempty"`
	// Headers must all be present with exactly these values.
	Headers []HeaderMatch `json:"headers,omitempty"`
	// QueryParams must all be present with exactly these values (the first
	// value of each name counts).
	QueryParams []HeaderMatch `json:"query_params,omitempty"`
	// Method, when set, must be the request's.
	Method string `json:"method,omitempty"`
}

// HeaderMatch is a header (or query parameter) that must have a value.
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HeaderEdit changes headers: Set replaces, Add appends a value, Remove
// deletes (names are case-insensitive).
type HeaderEdit struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is a header's name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Redirect is how to build a redirect's Location from the request's URL;
// empty fields keep the request's own.
type Redirect struct {
	// Scheme is "http" or "https".
	Scheme   string `json:"scheme,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Port is the Location's port; 0: the scheme's default when Scheme is
	// set, else the request's port.
	Port int           `json:"port,omitempty"`
	Path *PathModifier `json:"path,omitempty"`
	// StatusCode is 301, 302 (the default), 303, 307 or 308.
	StatusCode int `json:"status_code,omitempty"`
}

// Rewrite rewrites a request before it is sent.
type Rewrite struct {
	Hostname string        `json:"hostname,omitempty"`
	Path     *PathModifier `json:"path,omitempty"`
}

// PathModifier replaces a path: Type "ReplaceFullPath" replaces it all,
// "ReplacePrefixMatch" replaces the part the route's PathPrefix matched.
type PathModifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// PerMillionAll is the share of a mirror that gets a copy of every request.
const PerMillionAll = 1_000_000

// Mirror is a backend that gets copies of a route's requests.
type Mirror struct {
	Backend Backend `json:"backend"`
	// PerMillion is the share of the requests mirrored, in parts per
	// million, 1–PerMillionAll (every request when it and Percent are
	// unset): precise enough for a RequestMirror fraction well under 1 %.
	// A mirror of none is left out of its route instead.
	PerMillion int `json:"per_million,omitempty"`
	// Percent is the same share in whole percent, for the proxies of the
	// previous release, which read only it (and mirror every request
	// without it): PerMillion rounded, but at least 1 when PerMillion is
	// above 0 (see LegacyPercent). The controller sends both; a proxy
	// reads PerMillion, and Percent only when PerMillion is unset (a
	// controller of the previous release: see Share).
	//
	// Deprecated: the legacy wire field "percent", kept for rolling
	// upgrades only; remove it after one release.
	Percent int `json:"percent,omitempty"`
}

// LegacyPercent is the Mirror.Percent that goes with a share of perMillion
// parts per million: the nearest whole percent, but 1 for a share above 0
// that rounds to 0 (a proxy of the previous release mirrors every request
// when it reads no percent, so a small share must not read as unset).
func LegacyPercent(perMillion int) int {
	if perMillion <= 0 {
		return 0
	}
	const perPercent = PerMillionAll / 100
	return max((min(perMillion, PerMillionAll)+perPercent/2)/perPercent, 1)
}

// SetShare sets the mirror's share, perMillion parts per million, and the
// legacy Percent that goes with it (LegacyPercent): the controller's way
// to fill in both.
func (m *Mirror) SetShare(perMillion int) {
	m.PerMillion, m.Percent = perMillion, LegacyPercent(perMillion)
}

// Share is the mirror's share in parts per million as a proxy reads it:
// PerMillion when set, else the legacy Percent of a controller of the
// previous release (×10,000), else 0 (every request).
func (m Mirror) Share() int {
	if m.PerMillion == 0 && m.Percent > 0 {
		return min(m.Percent, 100) * (PerMillionAll / 100)
	}
	return m.PerMillion
}

// RouteTimeouts bound a route's requests, in milliseconds; 0: the
// Service's timeouts decide.
type RouteTimeouts struct {
	// RequestMs bounds the whole request, retries included; -1: no bound
	// at all (a route's "0s" turns the Service's timeout off).
	RequestMs int64 `json:"request_ms,omitempty"`
	// BackendRequestMs bounds each try; -1: no bound at all.
	BackendRequestMs int64 `json:"backend_request_ms,omitempty"`
}

// RouteRetry is an HTTPRoute's retry (GEP-1731).
type RouteRetry struct {
	// Codes are the HTTP statuses tried again (connection failures always
	// are, within Attempts).
	Codes []int `json:"codes,omitempty"`
	// Attempts is the most retries after the first try.
	Attempts int `json:"attempts,omitempty"`
	// BackoffMs is the wait before a retry, in milliseconds.
	BackoffMs int64 `json:"backoff_ms,omitempty"`
}

// Backend is a Service a route sends a share of its requests to.
type Backend struct {
	// Service is "<name>.<namespace>:<port>".
	Service string `json:"service"`
	// Weight is its share relative to the route's other backends; 0 sends
	// it nothing.
	Weight int `json:"weight"`
	// RequestHeaders edits the headers of requests sent to this backend
	// (backendRefs[].filters), after the route's own edits.
	RequestHeaders *HeaderEdit `json:"request_headers,omitempty"`
	// Endpoints are its ready endpoints (none when the Service is missing).
	Endpoints []Endpoint `json:"endpoints"`
	// Invalid says the reference names no Service port (another kind, a
	// missing Service or port): the requests its share takes get 500.
	Invalid bool `json:"invalid,omitempty"`
}
