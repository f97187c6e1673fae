// Package endpoints decides where a connection's requests go: a destination
// (the original destination of a redirected connection, or an explicit
// upstream) maps to a set of endpoints, picked from per request. Until the
// control plane streams discovery, the map comes from a static file, which
// stays the test seam.
package endpoints

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
)

// Set is the endpoints of one destination, picked from round robin.
type Set struct {
	addrs []string
	next  atomic.Uint32
}

// NewSet returns a set of host:port endpoints; it must not be empty.
func NewSet(addrs ...string) *Set {
	return &Set{addrs: append([]string(nil), addrs...)}
}

// Pick returns the endpoint for the next request.
func (s *Set) Pick() string {
	if len(s.addrs) == 1 {
		return s.addrs[0]
	}
	return s.addrs[int(s.next.Add(1)-1)%len(s.addrs)]
}

// Addrs returns the endpoints.
func (s *Set) Addrs() []string { return append([]string(nil), s.addrs...) }

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
	return NewSet(dst.String())
}

// Load reads a table from a JSON file mapping "ip:port" destinations to lists
// of "host:port" endpoints:
//
//	{"10.96.0.12:80": ["10.244.0.7:8080", "10.244.0.9:8080"]}
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	return Parse(data)
}

// Parse decodes a table (see Load).
func Parse(data []byte) (*Table, error) {
	var raw map[string][]string
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse endpoints: %w", err)
	}
	t := &Table{sets: make(map[netip.AddrPort]*Set, len(raw))}
	for dst, addrs := range raw {
		ap, err := netip.ParseAddrPort(dst)
		if err != nil {
			return nil, fmt.Errorf("endpoints: destination %q: %w", dst, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("endpoints: destination %s has no endpoints", dst)
		}
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("endpoints: %s: endpoint %q: %w", dst, a, err)
			}
		}
		t.sets[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = NewSet(addrs...)
	}
	return t, nil
}
