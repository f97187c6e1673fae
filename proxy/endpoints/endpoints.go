// Package endpoints decides where a connection's requests go: a destination
// (the original destination of a redirected connection, or an explicit
// upstream) maps to a set of endpoints, picked from per request. An endpoint
// that is meshed names the SPIFFE ID it must prove. Until the control plane
// streams discovery, the map comes from a static file, which stays the test seam.
package endpoints

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
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
}

// Meshed reports whether traffic to the endpoint goes over mutual TLS.
func (e Endpoint) Meshed() bool { return e.Identity != (spiffeid.ID{}) }

// Set is the endpoints of one destination, picked from round robin.
type Set struct {
	eps  []Endpoint
	next atomic.Uint32
}

// NewSet returns a set of endpoints; it must not be empty.
func NewSet(eps ...Endpoint) *Set {
	return &Set{eps: append([]Endpoint(nil), eps...)}
}

// Plain returns a set of one unmeshed endpoint.
func Plain(addr string) *Set { return NewSet(Endpoint{Addr: addr}) }

// Pick returns the endpoint for the next request.
func (s *Set) Pick() Endpoint {
	if len(s.eps) == 1 {
		return s.eps[0]
	}
	return s.eps[int(s.next.Add(1)-1)%len(s.eps)]
}

// Endpoints returns the endpoints.
func (s *Set) Endpoints() []Endpoint { return append([]Endpoint(nil), s.eps...) }

// Identity returns the SPIFFE ID shared by every endpoint, or the zero ID.
func (s *Set) Identity() spiffeid.ID {
	id := s.eps[0].Identity
	for _, e := range s.eps[1:] {
		if e.Identity != id {
			return spiffeid.ID{}
		}
	}
	return id
}

// Table maps destinations to their endpoint sets. Destinations not in the
// table are forwarded to as they are.
type Table struct {
	sets map[netip.AddrPort]*Set
}

// Lookup returns the endpoints of a destination.
func (t *Table) Lookup(dst netip.AddrPort) *Set {
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
