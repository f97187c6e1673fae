// Package endpoints decides where a connection's requests go: a destination
// (the original destination of a redirected connection, or an explicit
// upstream) maps to a set of endpoints, picked from per request. An endpoint
// that is meshed names the SPIFFE ID it must prove. A Resolver finds the set:
// the discovery client (proxy/discovery) in a pod, a static Table from a file
// in tests and explicit setups.
package endpoints

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/balance"
	"github.com/meshctl/meshctl/proxy/retry"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

// Endpoint is one place a request can go.
type Endpoint struct {
	// Addr is host:port.
	Addr string
	// Identity is the SPIFFE ID a meshed endpoint must prove; the zero ID
	// means the endpoint is not meshed and gets plaintext.
	Identity spiffeid.ID
	// Opaque says the destination port carries no HTTP worth detecting
	// (the server's config.meshctl.io/opaque-ports).
	Opaque bool
	// Workload names the endpoint's workload, when discovery knows it
	// (the dst_workload label of the requests sent to it).
	Workload string
	// Weight is the endpoint's relative share of requests (0 counts as 1).
	Weight int
}

// Meshed reports whether traffic to the endpoint goes over mutual TLS.
func (e Endpoint) Meshed() bool { return e.Identity != (spiffeid.ID{}) }

// Set is the endpoints of one destination. Its endpoints and policy may be
// replaced while connections use it (discovery updates); every request sees
// one consistent state. A balanced set (one that discovery filled) picks per
// request with P2C over peak-EWMA latency and keeps each endpoint's health
// across updates; a plain set is one address forwarded to as it is.
type Set struct {
	st atomic.Pointer[state]

	// mu serializes updates (they merge balancing state into a new state).
	mu sync.Mutex
	// waiting counts the requests queued for an endpoint to become available.
	waiting atomic.Int64
}

// state is one immutable version of a set.
type state struct {
	eps      []Endpoint
	bal      []*balance.Endpoint // per eps entry; nil for a plain set
	name     string              // for metrics: the Service and port, or the address
	policy   *servicepolicy.Policy
	budget   *retry.Budget // nil unless the policy retries
	changed  chan struct{} // closed when a newer state replaces this one
	balanced bool
	routes   []Route // HTTPRoutes attached to the Service, most specific first
}

var noPolicy = &servicepolicy.Policy{}

// NewSet returns a balanced set of endpoints. An empty set answers no
// request until Update gives it endpoints.
func NewSet(eps ...Endpoint) *Set {
	s := &Set{}
	s.Update(eps)
	return s
}

// Awaiting returns a balanced set with no endpoint yet, named name: requests
// wait (as their Queue allows) until Update gives it endpoints. Discovery
// starts destinations inside the cluster this way, so that nothing reaches
// them in plaintext before the controller has said what they are.
func Awaiting(name string) *Set {
	s := &Set{}
	s.st.Store(&state{name: name, policy: noPolicy, changed: make(chan struct{}), balanced: true})
	return s
}

// Plain returns a set of one unmeshed address, forwarded to as it is: no
// balancing, no backoff (the original destination of a connection, the
// application behind the inbound side).
func Plain(addr string) *Set { return Fixed(Endpoint{Addr: addr}) }

// Fixed returns a set of one endpoint forwarded to as it is (an explicit upstream).
func Fixed(ep Endpoint) *Set {
	s := &Set{}
	s.st.Store(&state{eps: []Endpoint{ep}, name: ep.Addr, policy: noPolicy, changed: make(chan struct{})})
	return s
}

// Update replaces the endpoints, keeping the balancing state of those that
// stay, and makes the set balanced.
func (s *Set) Update(eps []Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	next := &state{eps: slices.Clone(eps), bal: make([]*balance.Endpoint, len(eps)), policy: noPolicy, changed: make(chan struct{}), balanced: true}
	if old != nil {
		next.name, next.policy, next.budget, next.routes = old.name, old.policy, old.budget, old.routes
		for i, e := range eps {
			if j := slices.IndexFunc(old.eps, func(o Endpoint) bool { return o.Addr == e.Addr }); j >= 0 && old.bal != nil {
				next.bal[i] = old.bal[j]
			}
		}
	}
	for i, e := range eps {
		if next.bal[i] == nil {
			next.bal[i] = balance.NewEndpoint(0)
		}
		next.bal[i].SetWeight(e.Weight)
	}
	s.swap(old, next)
}

// Passthrough makes the set plain: every request goes to addr as it is (a
// destination discovery does not know).
func (s *Set) Passthrough(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	next := &state{eps: []Endpoint{{Addr: addr}}, name: addr, policy: noPolicy, changed: make(chan struct{})}
	s.swap(old, next)
}

// SetPolicy names the destination (for metrics) and sets its traffic
// policy; the retry budget starts afresh only when its sizing changes.
func (s *Set) SetPolicy(name string, p servicepolicy.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	next := *old
	next.changed = make(chan struct{})
	next.name, next.policy = name, &p
	next.budget = budgetFor(old.budget, p, old.routes)
	s.swap(old, &next)
}

// budgetFor is the retry budget of a destination with policy p and these
// routes: none when nothing retries, the current one while its sizing
// stays, else a fresh one.
func budgetFor(current *retry.Budget, p servicepolicy.Policy, routes []Route) *retry.Budget {
	retries := p.Retry.Enabled()
	for i := 0; i < len(routes) && !retries; i++ {
		retries = routes[i].Retry != nil
	}
	switch {
	case !retries:
		return nil
	case current == nil || current.Config() != p.Retry.Budget.WithDefaults():
		return retry.NewBudget(p.Retry.Budget, time.Now())
	}
	return current
}

// swap installs next and wakes the requests waiting on old. Callers hold mu.
func (s *Set) swap(old, next *state) {
	s.st.Store(next)
	if old != nil {
		close(old.changed)
	}
}

// Name is the destination's name in metrics.
func (s *Set) Name() string { return s.st.Load().name }

// Balanced reports whether discovery (or a table) filled the set, as
// opposed to one address forwarded to as it is.
func (s *Set) Balanced() bool { return s.st.Load().balanced }

// Policy returns the destination's traffic policy (never nil).
func (s *Set) Policy() *servicepolicy.Policy { return s.st.Load().policy }

// Budget returns the destination's retry budget, nil when it retries nothing.
func (s *Set) Budget() *retry.Budget { return s.st.Load().budget }

// Endpoints returns the endpoints.
func (s *Set) Endpoints() []Endpoint { return slices.Clone(s.st.Load().eps) }

// Ejected counts the endpoints taken out for failing.
func (s *Set) Ejected() int {
	n := 0
	for _, b := range s.st.Load().bal {
		if b.Ejected() {
			n++
		}
	}
	return n
}

// Identity returns the SPIFFE ID shared by every endpoint, or the zero ID.
func (s *Set) Identity() spiffeid.ID {
	eps := s.st.Load().eps
	if len(eps) == 0 {
		return spiffeid.ID{}
	}
	id := eps[0].Identity
	for _, e := range eps[1:] {
		if e.Identity != id {
			return spiffeid.ID{}
		}
	}
	return id
}

// Opaque reports whether the destination's port is opaque.
func (s *Set) Opaque() bool {
	eps := s.st.Load().eps
	return len(eps) > 0 && eps[0].Opaque
}

// Resolver finds the endpoints of an outbound destination (an original
// destination address). It never fails: what it cannot resolve goes to the
// destination as it is.
type Resolver interface {
	Resolve(ctx context.Context, dst netip.AddrPort) *Set
}

// Lister is a Resolver that can tell what it currently follows: each
// destination ("ip:port") and its endpoints (the admin's /destinations).
type Lister interface {
	List() map[string][]Endpoint
}

// SetLister is a Resolver that can hand out the sets it follows (for
// metrics that look into them, such as the ejected endpoints).
type SetLister interface {
	Sets() []*Set
}

// Table maps destinations to their endpoint sets. Destinations not in the
// table are forwarded to as they are.
type Table struct {
	sets map[netip.AddrPort]*Set
}

// Sets returns the table's sets.
func (t *Table) Sets() []*Set {
	if t == nil {
		return nil
	}
	out := make([]*Set, 0, len(t.sets))
	for _, s := range t.sets {
		out = append(out, s)
	}
	return out
}

// Has reports whether the table maps dst.
func (t *Table) Has(dst netip.AddrPort) bool {
	if t == nil {
		return false
	}
	_, ok := t.sets[netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())]
	return ok
}

// Resolve returns the endpoints of a destination.
func (t *Table) Resolve(_ context.Context, dst netip.AddrPort) *Set {
	if t != nil {
		if s, ok := t.sets[dst]; ok {
			return s
		}
	}
	return Plain(dst.String())
}

// Load reads a table from a JSON file mapping "ip:port" destinations to lists
// of endpoints, each "host:port" or {"addr": "host:port", "identity": "spiffe://..."}:
//
//	{"10.96.0.12:80": ["10.244.0.7:8080", {"addr": "10.244.0.9:8080", "identity": "spiffe://cluster.local/ns/demo/sa/web"}]}
//
// or to an object with the list and the traffic-policy annotations a Service
// would carry:
//
//	{"10.96.0.12:80": {"endpoints": ["10.244.0.7:8080"], "annotations": {"retry.meshctl.io/http": "5xx"}}}
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	return Parse(data)
}

// Parse decodes a table (see Load).
func Parse(data []byte) (*Table, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse endpoints: %w", err)
	}
	t := &Table{sets: make(map[netip.AddrPort]*Set, len(raw))}
	for dst, value := range raw {
		ap, err := netip.ParseAddrPort(dst)
		if err != nil {
			return nil, fmt.Errorf("endpoints: destination %q: %w", dst, err)
		}
		var d struct {
			Endpoints   []json.RawMessage `json:"endpoints"`
			Annotations map[string]string `json:"annotations"`
		}
		if bytes.HasPrefix(bytes.TrimSpace(value), []byte("{")) {
			err = json.Unmarshal(value, &d)
		} else {
			err = json.Unmarshal(value, &d.Endpoints)
		}
		if err != nil {
			return nil, fmt.Errorf("endpoints: destination %s: %w", dst, err)
		}
		entries := d.Endpoints
		pol, errs := servicepolicy.Parse(d.Annotations)
		if len(errs) > 0 {
			return nil, fmt.Errorf("endpoints: destination %s: %w", dst, errors.Join(errs...))
		}
		if len(entries) == 0 {
			return nil, fmt.Errorf("endpoints: destination %s has no endpoints", dst)
		}
		eps := make([]Endpoint, 0, len(entries))
		for _, e := range entries {
			ep, err := parseEndpoint(e)
			if err != nil {
				return nil, fmt.Errorf("endpoints: %s: %w", dst, err)
			}
			eps = append(eps, ep)
		}
		set := NewSet(eps...)
		set.SetPolicy(dst, pol)
		t.sets[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = set
	}
	return t, nil
}

func parseEndpoint(raw json.RawMessage) (Endpoint, error) {
	var e struct {
		Addr     string `json:"addr"`
		Identity string `json:"identity"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		if err := json.Unmarshal(raw, &e); err != nil {
			return Endpoint{}, err
		}
	} else if err := json.Unmarshal(raw, &e.Addr); err != nil {
		return Endpoint{}, err
	}
	if _, _, err := net.SplitHostPort(e.Addr); err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", e.Addr, err)
	}
	ep := Endpoint{Addr: e.Addr}
	if e.Identity != "" {
		id, err := spiffeid.Parse(e.Identity)
		if err != nil {
			return Endpoint{}, err
		}
		ep.Identity = id
	}
	return ep, nil
}
