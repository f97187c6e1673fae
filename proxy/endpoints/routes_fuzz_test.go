package endpoints

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
)

// FuzzRouteMatch checks HTTPRoute request matching against a reference
// written from the Gateway API's words rather than from the code:
//
//   - matches agrees with refMatches on every route built from the input
//     (path by whole segments or exact, method, headers with
//     case-insensitive names and exact first values, query parameters
//     with exact first values), with or without canonical header names;
//   - a raw query that url.ParseQuery accepts matches a query parameter
//     exactly when url.Values' first value for the name is the wanted one;
//   - PrefixRest's ok is refPrefix's, and prefix and rest put back
//     together are the path again, rest being "" or starting with "/";
//   - Set.Route takes the first route, in the order given, that the
//     reference matches (precedence is the controller's: it sorts the
//     routes, the proxy takes the first match), nil and true without
//     routes, nil and false when none matches.
//
// The input is a request target ("/path?query"), a method, header lines
// ("Name: value\n") and a program of bytes (see routeProgram) that builds
// the routes, mostly out of pieces of the request so that they match often.
func FuzzRouteMatch(f *testing.F) {
	for _, seed := range []struct {
		target, method, headers string
		prog                    []byte
	}{
		// The programs' layout is routeProgram.routes'.
		{"/foo/bar", "GET", "", []byte{1, 0, 2, 0, 3, 0, 0}},               // PathPrefix "/foo"
		{"/foobar", "GET", "", []byte{1, 0, 2, 0, 3, 0, 0}},                // PathPrefix "/foo": no
		{"/foo", "GET", "", []byte{2, 0, 1, 0, 3, 0, 0, 0, 2, 0, 4, 0, 0}}, // Exact "/foo", PathPrefix "/foo/"
		{"/foo/", "GET", "", []byte{1, 0, 2, 1, 0, 0}},                     // PathPrefix "/foo/" on "/foo/"
		{"/v2example", "GET", "", []byte{1, 0, 2, 0, 9, 0, 0}},             // PathPrefix "/v2"
		{"/", "POST", "", []byte{2, 2, 0, 11, 0, 0, 0, 1, 0, 0, 0}},        // method GET, then the request's
		{"/a", "GET", "X-Canary: true\n", []byte{1, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0}},
		{"/a", "GET", "X-Canary: true\nx-canary: false\n", []byte{2, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}},
		{"/?animal=whale&animal=dolphin", "GET", "", []byte{2, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0}},
		{"/?animal=%zz&animal=whale", "GET", "", []byte{1, 0, 0, 0, 1, 1, 1, 1, 1}},
		{"/?color=light+blue&a%20b=1", "GET", "", []byte{1, 0, 0, 0, 2, 1, 0, 1, 0, 1, 1, 1, 1}},
		{"/?a;b=1&a=2", "GET", "", []byte{1, 0, 0, 0, 1, 1, 1, 1, 1}},
		{"/x/y/z", "PUT", "A: 1\nB: 2\n", []byte{4, 1, 1, 1, 0, 0, 0, 2, 2, 3, 0, 0, 0, 2, 3, 1, 0, 0, 0, 2, 2, 6, 2, 1, 0, 1, 0, 1, 1, 1, 1, 0}},
		{"//a//b", "GET", "", []byte{2, 0, 2, 2, 3, 0, 0, 0, 2, 2, 2, 0, 0}},
		{"/%2Fa/b", "GET", "", []byte{1, 0, 2, 2, 4, 0, 0}},
		{"*", "OPTIONS", "", []byte{1, 0, 2, 0, 1, 0, 0}},
		{"", "GET", "", nil},
	} {
		f.Add(seed.target, seed.method, seed.headers, seed.prog)
	}
	f.Fuzz(func(t *testing.T, target, method, headerLines string, prog []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			path, query, _ := strings.Cut(target, "?")
			u = &url.URL{Path: path, RawQuery: query}
		}
		header := http.Header{}
		for line := range strings.Lines(headerLines) {
			name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
			if isToken(name) { // what an HTTP server lets through
				header.Add(name, strings.TrimSpace(value))
			}
		}
		specs := routeProgram{prog: prog}.routes(method, u, header)
		for i, spec := range specs {
			m := spec.Match
			want := refMatches(m, method, u, header)
			if got := matches(m, method, u, header); got != want {
				t.Fatalf("route %d %+v on %s %q (query %q) %v: matches = %v, the reference says %v", i, m, method, u.Path, u.RawQuery, header, got, want)
			}
			if got := matches(canonical(m), method, u, header); got != want {
				t.Fatalf("route %d %+v (canonical) on %s %q %v: matches = %v, the reference says %v", i, canonical(m), method, u.Path, header, got, want)
			}
			for _, q := range m.QueryParams {
				vals, err := url.ParseQuery(u.RawQuery)
				if err != nil {
					break
				}
				one := api.RouteMatch{QueryParams: []api.HeaderMatch{q}}
				if got, want := matches(one, method, u, header), len(vals[q.Name]) > 0 && vals[q.Name][0] == q.Value; got != want {
					t.Fatalf("query %q, param %q=%q: matches = %v, url.ParseQuery says %v", u.RawQuery, q.Name, q.Value, got, want)
				}
			}
			if m.PathType == "PathPrefix" {
				checkPrefixRest(t, m.Path, u.Path)
			}
		}
		checkPrefixRest(t, target, u.Path)
		checkPrefixRest(t, headerLines, target)

		s := NewSet()
		s.SetRoutes(specs)
		req := &http.Request{Method: method, URL: u, Header: header}
		got, found := s.Route(req)
		routes := s.Routes()
		want := -1
		for i := range specs {
			if refMatches(specs[i].Match, method, u, header) {
				want = i
				break
			}
		}
		switch {
		case len(specs) == 0:
			if got != nil || !found {
				t.Fatalf("no routes: Route = %v, %v; want nil, true", got, found)
			}
		case want < 0:
			if got != nil || found {
				t.Fatalf("no route matches %s %q %v: Route = %+v, %v; want nil, false", method, target, header, got, found)
			}
		default:
			if !found || got != &routes[want] {
				t.Fatalf("%s %q %v: Route = %+v, %v; want route %d, %+v (the first that matches)", method, target, header, got, found, want, routes[want])
			}
		}
	})
}

// checkPrefixRest checks PrefixRest(prefix, path) against refPrefix, and
// that its rest puts the path back together behind the prefix.
func checkPrefixRest(t *testing.T, prefix, path string) {
	t.Helper()
	rest, ok := PrefixRest(prefix, path)
	if want := refPrefix(prefix, path); ok != want {
		t.Fatalf("PrefixRest(%q, %q) ok = %v, the reference says %v", prefix, path, ok, want)
	}
	if !ok {
		return
	}
	if got := strings.TrimSuffix(prefix, "/") + rest; got != path {
		t.Fatalf("PrefixRest(%q, %q) = %q: prefix and rest make %q, not the path", prefix, path, rest, got)
	}
	if strings.HasPrefix(path, "/") && rest != "" && rest[0] != '/' {
		t.Fatalf("PrefixRest(%q, %q) = %q: neither empty nor starting with /", prefix, path, rest)
	}
}

// refMatches is the Gateway API's HTTPRouteMatch, said plainly: every
// condition set must hold. A path type other than Exact and PathPrefix
// puts no condition on the path (the proxy is given no other).
func refMatches(m api.RouteMatch, method string, u *url.URL, header http.Header) bool {
	if m.Method != "" && m.Method != method {
		return false
	}
	if m.PathType == "Exact" && u.Path != m.Path {
		return false
	}
	if m.PathType == "PathPrefix" && !refPrefix(m.Path, u.Path) {
		return false
	}
	for _, h := range m.Headers {
		v, ok := refHeader(header, h.Name)
		if !ok || v != h.Value {
			return false
		}
	}
	for _, q := range m.QueryParams {
		v, ok := refQuery(u.RawQuery, q.Name)
		if !ok || v != q.Value {
			return false
		}
	}
	return true
}

// refPrefix is PathPrefix matching element by element: the prefix, a
// trailing "/" ignored, split at "/" must be the first elements of the
// path split at "/". An empty prefix (or "/") matches every path.
func refPrefix(prefix, path string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	want, have := strings.Split(prefix, "/"), strings.Split(path, "/")
	if len(have) < len(want) {
		return false
	}
	for i := range want {
		if want[i] != have[i] {
			return false
		}
	}
	return true
}

// refHeader returns the first value of the header whose name equals name
// but for ASCII case, looking at every name the request has.
func refHeader(header http.Header, name string) (string, bool) {
	for k, vv := range header {
		if len(vv) > 0 && strings.EqualFold(k, name) {
			return vv[0], true
		}
	}
	return "", false
}

// refQuery returns the first value of the query parameter name, both
// unescaped: pairs split at "&", a pair whose name does not unescape is
// skipped, and the first pair of the name decides (a value that does not
// unescape matches nothing).
func refQuery(raw, name string) (string, bool) {
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil || k != name {
			continue
		}
		v, err = url.QueryUnescape(v)
		return v, err == nil
	}
	return "", false
}

// isToken reports whether name is a non-empty HTTP token of ASCII
// letters, digits and the punctuation RFC 9110 allows.
func isToken(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// routeProgram builds routes out of bytes, taking its words mostly from
// the request so that routes match, or nearly match, often.
type routeProgram struct {
	prog []byte
}

// next takes the next byte modulo n (0 when the program is used up).
func (p *routeProgram) next(n int) int {
	if len(p.prog) == 0 || n <= 0 {
		return 0
	}
	b := int(p.prog[0])
	p.prog = p.prog[1:]
	return b % n
}

// words is the program's own vocabulary, besides the request's.
var words = []string{"", "/", "foo", "/foo", "/foo/", "x-canary", "true", "a", "1", "/v2", "%2F", "GET"}

// routes builds up to 4 routes for a request.
func (p routeProgram) routes(method string, u *url.URL, header http.Header) []RouteSpec {
	var names, values []string
	for k, vv := range header {
		names = append(names, k)
		values = append(values, vv...)
	}
	var qnames, qvalues []string
	for _, pair := range strings.Split(u.RawQuery, "&") {
		k, v, _ := strings.Cut(pair, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		qnames, qvalues = append(qnames, k), append(qvalues, v)
	}
	pick := func(from []string) string {
		if len(from) == 0 || p.next(2) == 0 {
			return words[p.next(len(words))]
		}
		return from[p.next(len(from))]
	}
	recase := func(s string) string {
		b := []byte(s)
		for i := range b {
			if p.next(2) == 1 && 'a' <= b[i]|0x20 && b[i]|0x20 <= 'z' {
				b[i] ^= 0x20
			}
		}
		return string(b)
	}
	specs := make([]RouteSpec, p.next(5))
	for i := range specs {
		var m api.RouteMatch
		switch p.next(4) {
		case 1:
			m.Method = method
		case 2:
			m.Method = pick([]string{"GET", "POST", strings.ToLower(method)})
		}
		m.PathType = []string{"", "Exact", "PathPrefix", "RegularExpression"}[p.next(4)]
		if m.PathType != "" {
			switch p.next(4) {
			case 0:
				m.Path = words[p.next(len(words))]
			case 1:
				m.Path = u.Path
			case 2: // a piece of the path, cut anywhere
				m.Path = u.Path[:p.next(len(u.Path)+1)]
			case 3:
				m.Path = u.Path + "/"
			}
		}
		for range p.next(3) {
			// An empty value (the Gateway API wants one, MinLength 1)
			// still needs the header to be there.
			m.Headers = append(m.Headers, api.HeaderMatch{Name: recase(pick(names)), Value: pick(values)})
		}
		for range p.next(3) {
			m.QueryParams = append(m.QueryParams, api.HeaderMatch{Name: pick(qnames), Value: pick(qvalues)})
		}
		specs[i] = RouteSpec{Name: "r", Match: m}
	}
	return specs
}
