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
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"

	"github.com/meshctl/meshctl/identity/spiffeid"
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
}

// Meshed reports whether traffic to the endpoint goes over mutual TLS.
func (e Endpoint) Meshed() bool { return e.Identity != (spiffeid.ID{}) }

// Set is the endpoints of one destination, picked from round robin. Its
// endpoints may be replaced while connections use it (discovery updates);
// every pick sees one consistent list.
type Set struct {
	eps  atomic.Pointer[[]Endpoint]
	next atomic.Uint32
}

// NewSet returns a set of endpoints. An empty set answers no pick until
// Update gives it endpoints.
func NewSet(eps ...Endpoint) *Set {
	s := &Set{}
	s.Update(eps)
	return s
}

// Plain returns a set of one unmeshed endpoint.
func Plain(addr string) *Set { return NewSet(Endpoint{Addr: addr}) }

// Update replaces the endpoints.
func (s *Set) Update(eps []Endpoint) {
	c := slices.Clone(eps)
	s.eps.Store(&c)
}

// Pick returns the endpoint for the next request; false when there is none.
func (s *Set) Pick() (Endpoint, bool) {
	eps := *s.eps.Load()
	switch len(eps) {
	case 0:
		return Endpoint{}, false
	case 1:
		return eps[0], true
	}
	return eps[int(s.next.Add(1)-1)%len(eps)], true
}

// Endpoints returns the endpoints.
func (s *Set) Endpoints() []Endpoint { return slices.Clone(*s.eps.Load()) }

// Identity returns the SPIFFE ID shared by every endpoint, or the zero ID.
func (s *Set) Identity() spiffeid.ID {
	eps := *s.eps.Load()
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
	eps := *s.eps.Load()
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

// Table maps destinations to their endpoint sets. Destinations not in the
// table are forwarded to as they are.
type Table struct {
	sets map[netip.AddrPort]*Set
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
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	return Parse(data)
}

// Parse decodes a table (see Load).
func Parse(data []byte) (*Table, error) {
	var raw map[string][]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse endpoints: %w", err)
	}
	t := &Table{sets: make(map[netip.AddrPort]*Set, len(raw))}
	for dst, entries := range raw {
		ap, err := netip.ParseAddrPort(dst)
		if err != nil {
			return nil, fmt.Errorf("endpoints: destination %q: %w", dst, err)
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
		t.sets[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = NewSet(eps...)
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
