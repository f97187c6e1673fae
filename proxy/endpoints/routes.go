package endpoints

import (
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/meshctl/meshctl/internal/api"
)

// Route sends the requests it matches to its backends, by weight (an
// HTTPRoute rule's match attached to the destination's Service).
type Route struct {
	// Name is the HTTPRoute's namespace/name.
	Name string
	// Match says which requests it takes.
	Match api.RouteMatch
	// Backends share its requests.
	Backends []Backend
}

// Backend is one Service of a route, with its share.
type Backend struct {
	// Name is the Service, "name.namespace:port".
	Name string
	// Weight is its share relative to the route's other backends.
	Weight int
	// Set is its endpoints, balanced like any destination's.
	Set *Set
}

// BackendSpec is a backend as discovery describes it.
type BackendSpec struct {
	Name      string
	Weight    int
	Endpoints []Endpoint
}

// RouteSpec is a route as discovery describes it.
type RouteSpec struct {
	Name     string
	Match    api.RouteMatch
	Backends []BackendSpec
}

// SetRoutes replaces the destination's routes; backends keep their
// balancing state across updates (by Service).
func (s *Set) SetRoutes(specs []RouteSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	keep := map[string]*Set{}
	for _, r := range old.routes {
		for _, b := range r.Backends {
			keep[b.Name] = b.Set
		}
	}
	routes := make([]Route, len(specs))
	for i, spec := range specs {
		r := Route{Name: spec.Name, Match: spec.Match, Backends: make([]Backend, len(spec.Backends))}
		for j, b := range spec.Backends {
			set := keep[b.Name]
			if set == nil {
				set = NewSet()
			}
			set.Update(b.Endpoints)
			set.SetPolicy(b.Name, *old.policy)
			r.Backends[j] = Backend{Name: b.Name, Weight: max(b.Weight, 0), Set: set}
		}
		routes[i] = r
	}
	next := *old
	next.changed = make(chan struct{})
	next.routes = routes
	s.swap(old, &next)
}

// Routes returns the destination's routes.
func (s *Set) Routes() []Route { return s.st.Load().routes }

// Route returns where a request goes: a backend of the first route that
// matches it, chosen by weight, or the set itself when no route matches.
// ok is false when the matching route has nothing to send it to (no
// backend, or every weight 0).
func (s *Set) Route(r *http.Request) (set *Set, ok bool) {
	routes := s.st.Load().routes
	for i := range routes {
		if matches(routes[i].Match, r.Method, r.URL.Path, r.Header) {
			set := routes[i].choose(rand.IntN)
			return set, set != nil
		}
	}
	return s, true
}

// choose picks a backend by weight, nil when none weighs anything; intN
// draws from [0, n).
func (r *Route) choose(intN func(int) int) *Set {
	total := 0
	for _, b := range r.Backends {
		total += b.Weight
	}
	if total == 0 {
		return nil
	}
	n := intN(total)
	for _, b := range r.Backends {
		if n < b.Weight {
			return b.Set
		}
		n -= b.Weight
	}
	return nil // unreachable
}

// matches reports whether a request matches m; the zero RouteMatch matches
// every request. A path prefix matches whole segments.
func matches(m api.RouteMatch, method, path string, header http.Header) bool {
	if m.Method != "" && m.Method != method {
		return false
	}
	switch m.PathType {
	case "Exact":
		if path != m.Path {
			return false
		}
	case "PathPrefix":
		prefix := strings.TrimSuffix(m.Path, "/")
		if prefix != "" && path != prefix && !strings.HasPrefix(path, prefix+"/") {
			return false
		}
	}
	for _, h := range m.Headers {
		if header.Get(h.Name) != h.Value {
			return false
		}
	}
	return true
}
