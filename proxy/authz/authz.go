package authz

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// Decision is what a Guard says of a request or connection.
type Decision struct {
	// Status is 0 to let it in, 403 when it is not authorized, 429 when it
	// is over a rate limit.
	Status int
	// RetryAfter, with 429, is when to try again.
	RetryAfter time.Duration
	// ConnectOnly, for a connection let in as the kubelet's TCP probe, says
	// the probe only needs the connection made: nothing the client sends
	// may reach the application (else the probe's exemption would be a
	// tunnel past the port's policy).
	ConnectOnly bool
	// Rule names what decided: an AuthorizationPolicy ("ns/name"),
	// "default:<policy>", "probe" or "rate-limit".
	Rule string
}

// Allowed reports whether the request may go on.
func (d Decision) Allowed() bool { return d.Status == 0 }

// Decisions, as counted.
const (
	Allowed     = "allow"
	Denied      = "deny"
	RateLimited = "rate_limited"
)

// Counter is told each decision (Allowed, Denied or RateLimited) and its rule.
type Counter func(decision, rule string)

// Guard holds a pod's inbound policy. It is safe for concurrent use.
type Guard struct {
	st    atomic.Pointer[state]
	count atomic.Pointer[Counter]

	// readyOnce closes ready at the first Update.
	readyOnce sync.Once
	ready     chan struct{}
}

// state is one version of the policy with its limiters.
type state struct {
	policy      api.InboundPolicy
	defaultRule string        // "default:<policy>", made once
	total       *rate.Limiter // nil: no limit
	perClient   *lru.Cache[string, *rate.Limiter]
	// pending refuses everything: no policy has arrived yet (NewPending).
	pending bool
}

// New returns a guard applying the default policy def (one of the
// constants) until the first Update.
func New(def string) *Guard {
	if def == "" {
		def = meshnames.DefaultAllUnauthenticated
	}
	g := &Guard{ready: make(chan struct{})}
	g.st.Store(&state{policy: api.InboundPolicy{Default: def}, defaultRule: "default:" + def})
	g.CountWith(func(string, string) {})
	return g
}

// Rules that are not an AuthorizationPolicy or a default.
const (
	// Pending refuses everything before a guard's first policy.
	Pending = "pending"
	// ProbeRule lets in the kubelet's probes.
	ProbeRule = "probe"
)

// NewPending returns a guard that refuses every request and connection
// (rule "pending") until the first Update: a proxy that has not yet heard
// its pod's policy must not guess it. The proxy stays unready meanwhile.
func NewPending() *Guard {
	g := &Guard{ready: make(chan struct{})}
	g.st.Store(&state{policy: api.InboundPolicy{Default: meshnames.DefaultDeny}, defaultRule: Pending, pending: true})
	g.CountWith(func(string, string) {})
	return g
}

// CountWith makes the guard tell c each decision.
func (g *Guard) CountWith(c Counter) { g.count.Store(&c) }

// Ready is closed once the first policy arrived.
func (g *Guard) Ready() <-chan struct{} { return g.ready }

// Policy returns the policy in force.
func (g *Guard) Policy() api.InboundPolicy { return g.st.Load().policy }

// Update puts a new policy in force. Rate limiters whose rate is unchanged
// keep their state.
func (g *Guard) Update(p api.InboundPolicy) {
	old := g.st.Load()
	next := &state{policy: p, defaultRule: "default:" + p.Default}
	if p.RateLimit > 0 {
		if old.total != nil && float64(old.total.Limit()) == p.RateLimit {
			next.total = old.total
		} else {
			next.total = newLimiter(p.RateLimit)
		}
	}
	if p.RateLimitPerClient > 0 {
		if old.perClient != nil && old.policy.RateLimitPerClient == p.RateLimitPerClient {
			next.perClient = old.perClient
		} else {
			next.perClient, _ = lru.New[string, *rate.Limiter](4096)
		}
	}
	g.st.Store(next)
	g.readyOnce.Do(func() { close(g.ready) })
}

// newLimiter allows r requests a second, in bursts of up to a second's worth.
func newLimiter(r float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(r))))
}

// Request is what a Guard decides on.
type Request struct {
	// Port is the application port the client meant to reach.
	Port uint16
	// HTTP says this is an HTTP request; false for a connection that is not
	// HTTP (opaque TCP, TLS that is not the mesh's).
	HTTP bool
	// Path is an HTTP request's path, decoded (url.URL.Path). The guard
	// decides on it only when RawPath is empty.
	Path string
	// RawPath is an HTTP request's path as the client sent it, still
	// percent-encoded (url.URL.EscapedPath()). When set, the guard decides
	// on it rather than on Path: only the encoded form tells an encoded
	// slash (%2F, which the application may not split on) from a real one.
	RawPath string
	// ClientID is the SPIFFE ID the client proved; "" when not meshed.
	ClientID string
	// FromNode says the client is the node itself (where the kubelet probes
	// from), connecting in plaintext.
	FromNode bool
	// TLS says a connection that is not HTTP is TLS (not the mesh's): an
	// HTTPS probe's.
	TLS bool
}

// Admit decides on a request or connection.
func (g *Guard) Admit(req Request) Decision {
	st := g.st.Load()
	p := &st.policy
	count := *g.count.Load()
	if st.pending {
		count(Denied, Pending)
		return Decision{Status: 403, Rule: Pending}
	}
	port, http, clientID := req.Port, req.HTTP, req.ClientID
	// Decide on the path as the application will resolve it: /a/../b is /b;
	// /a/..;/b is /b to Tomcat and /a/..;/b to Go, so it matches only what
	// both are under (see servedPath).
	path, pathOK := "", false
	if http {
		path, pathOK = servedPath(req.Path, req.RawPath)
	}
	if pr, ok := probe(p, req, path, pathOK); ok {
		count(Allowed, ProbeRule)
		return Decision{Rule: ProbeRule, ConnectOnly: !http && !(pr.TLS && req.TLS)}
	}
	if http && pathOK {
		path = withUnresolved(path, req.Path, req.RawPath) // dot segments left in too, for path prefixes
	}
	covered, allowed, rule := false, false, ""
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Port != 0 && r.Port != int(port) {
			continue
		}
		covered, rule = true, r.Name
		if matchPath(r.PathPrefixes, path, http, pathOK) && matchIdentity(r.Identities, clientID) {
			allowed = true
			break
		}
	}
	if !covered {
		rule = st.defaultRule
		switch p.Default {
		case meshnames.DefaultAllUnauthenticated:
			allowed = true
		case meshnames.DefaultAllAuthenticated:
			allowed = clientID != ""
		}
	}
	if !allowed {
		count(Denied, rule)
		return Decision{Status: 403, Rule: rule}
	}
	if st.total != nil && !st.total.Allow() {
		count(RateLimited, "rate-limit")
		return Decision{Status: 429, RetryAfter: retryAfter(st.total), Rule: "rate-limit"}
	}
	if st.perClient != nil {
		l, ok := st.perClient.Get(clientID)
		if !ok {
			l = newLimiter(p.RateLimitPerClient)
			st.perClient.Add(clientID, l)
		}
		if !l.Allow() {
			count(RateLimited, "rate-limit-per-client")
			return Decision{Status: 429, RetryAfter: retryAfter(l), Rule: "rate-limit-per-client"}
		}
	}
	count(Allowed, rule)
	return Decision{Rule: rule}
}

// IsProbe reports whether req is one of the kubelet's probes of the pod:
// from the node, on a probe's port, on its path for an HTTP probe, a
// connection that is not HTTP for a TCP probe.
func (g *Guard) IsProbe(req Request) bool {
	st := g.st.Load()
	if st.pending {
		return false
	}
	path, pathOK := "", false
	if req.HTTP {
		path, pathOK = servedPath(req.Path, req.RawPath)
	}
	_, ok := probe(&st.policy, req, path, pathOK)
	return ok
}

// probe finds the probe req is: an HTTP probe lets in its path; a TCP or
// HTTPS probe lets in connections that are not HTTP (the kubelet's bare
// connect, or its TLS), never requests.
func probe(p *api.InboundPolicy, req Request, path string, pathOK bool) (api.Probe, bool) {
	if !req.FromNode {
		return api.Probe{}, false
	}
	for _, pr := range p.Probes {
		if pr.Port == int(req.Port) && ((pr.Path == "" && !req.HTTP) || (req.HTTP && pathOK && pr.Path == path)) {
			return pr, true
		}
	}
	return api.Probe{}, false
}

// HTTPOnly reports whether port's policy can only be enforced request by
// request: a rate limit, or a rule for the port with path prefixes. Such a
// port must refuse what the proxy cannot read as HTTP (undetected or opaque
// connections), which would otherwise be admitted once and then carry any
// number of requests. Before the first policy, every port is.
func (g *Guard) HTTPOnly(port uint16) bool {
	st := g.st.Load()
	p := &st.policy
	if st.pending || p.RateLimit > 0 || p.RateLimitPerClient > 0 {
		return true
	}
	for i := range p.Rules {
		if r := &p.Rules[i]; (r.Port == 0 || r.Port == int(port)) && len(r.PathPrefixes) > 0 {
			return true
		}
	}
	return false
}

// retryAfter is the time one token takes to come back.
func retryAfter(l *rate.Limiter) time.Duration {
	return time.Duration(float64(time.Second) / float64(l.Limit()))
}

func matchIdentity(ids []string, client string) bool {
	if client == "" {
		return false
	}
	for _, id := range ids {
		if id == "*" || id == client {
			return true
		}
	}
	return false
}
