package authz

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// The reference of FuzzPathDifferential: how common servers route a
// request path as the proxy forwards it (url.URL.EscapedPath() of the
// request line as net/http parsed it, see httpproxy/forward.go), written
// independently of servedPath. Each model returns the path it routes and
// false when it refuses the request.
//
//   - decodeAll: Go's net/http ServeMux (Go 1.22+) and nginx. ServeMux
//     cleans the decoded r.URL.Path with path.Clean (keeping a trailing
//     slash) and answers 301 to the cleaned path when they differ; the
//     client follows and the new request is what gets routed (and passes
//     the guard again). nginx percent-decodes everything (%2F included),
//     merges slashes (merge_slashes on) and resolves "." and "..". Both
//     keep ";" and "\" as data and refuse a bad escape (400).
//   - envoyNormalized: Envoy with normalize_path and merge_slashes (RFC
//     3986 6.2.2): only unreserved characters are decoded (%2e is "."), a
//     backslash becomes "/", dot segments are removed, other escapes stay.
//   - servlet: Tomcat or Jetty (Spring): each segment's ";" parameters are
//     dropped, then the segment is decoded, "\" separates segments
//     (ALLOW_BACKSLASH), dot segments are removed.
//   - rawRouting: Envoy's default (normalize_path off), Express, Fastify,
//     HAProxy: the path is routed as it was sent, by prefix, with no dot
//     segment removed and nothing decoded: /admin/../api/x goes to the
//     /admin routes.
//
// A path is under a prefix when its first segment is the prefix's (for
// rawRouting, when the raw string starts with the prefix and then "/" or
// ends, as a prefix route matches).
type pathModel struct {
	name      string
	normalize bool // resolves dot segments (rawRouting does not)
	route     func(escaped string) (string, bool)
}

var pathModels = []pathModel{
	{"decodeAll (net/http ServeMux, nginx)", true, func(p string) (string, bool) {
		d, err := url.PathUnescape(p)
		if err != nil {
			return "", false
		}
		return removeDots(strings.Split(d, "/")), true
	}},
	{"envoyNormalized", true, func(p string) (string, bool) {
		d, ok := decodeUnreserved(strings.ReplaceAll(p, `\`, "/"))
		if !ok {
			return "", false
		}
		return removeDots(strings.Split(d, "/")), true
	}},
	{"servlet (Tomcat, Jetty)", true, func(p string) (string, bool) {
		segs := strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' })
		for i, s := range segs {
			s, _, _ = strings.Cut(s, ";")
			d, err := url.PathUnescape(s)
			if err != nil {
				return "", false
			}
			segs[i] = d
		}
		return removeDots(segs), true
	}},
	{"rawRouting (Envoy default, Express, Fastify)", false, func(p string) (string, bool) { return p, true }},
}

// removeDots resolves "." and ".." and drops empty segments (merged
// slashes), as RFC 3986 5.2.4 with merge_slashes does; a trailing slash
// stays.
func removeDots(segs []string) string {
	var out []string
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	p := "/" + strings.Join(out, "/")
	if len(segs) > 0 && len(out) > 0 && (segs[len(segs)-1] == "" || segs[len(segs)-1] == "." || segs[len(segs)-1] == "..") {
		p += "/"
	}
	return p
}

// decodeUnreserved decodes the escapes of unreserved characters (RFC 3986
// 2.3) and keeps the others, as Envoy's path normalisation does.
func decodeUnreserved(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		d, err := url.PathUnescape(p[i : i+3])
		if err != nil {
			return "", false
		}
		if c := d[0]; 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String(), true
}

// underPrefix reports whether a model's routed path is under /top.
func underPrefix(m pathModel, p, top string) bool {
	if !m.normalize {
		return strings.HasPrefix(p, "/"+top) && (len(p) == len(top)+1 || p[len(top)+1] == '/')
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return first == top
}

// plainPath is a path every server routes the same: lowercase segments,
// no dot segment, nothing to decode or merge.
var plainPath = regexp.MustCompile(`^(/[a-z0-9]+)+/?$`)

// FuzzPathDifferential checks the guard's path decisions against the
// models above, for a port where every meshed client may reach /api and
// only the admin /admin (default deny). Oracle: a request the guard lets
// an ordinary client make is routed under /admin by no model (no bypass of
// the protected prefix), and under /api by every model that resolves dot
// segments (a path the servers disagree on is refused, not allowed); a
// plain path under /api is allowed, and a plain /admin path is allowed to
// the admin only.
func FuzzPathDifferential(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.raw)
	}
	for _, s := range []string{
		"/admin/../api/x", "/api/../admin", "/admin/./../api", "/admin/x/../../api/x", "/api/x/../../admin",
		"/admin%2f..%2fapi", "/%61dmin/../api/x", "/admin/%2E%2E/api", "/admin/..%2F/api", `/admin\..\api`, "/admin;/../api",
		"/admin/..;/api", "//admin/../api", "/./admin/../api", "/api/x/", "/api/", "/admin/", "/admin", "/admin/x",
		"/api%00", "/api/x\x00", "/api/%2e%2e/admin/", "/API/x", "/admin/.././api/x", "/admin/..//api",
	} {
		f.Add(s)
	}
	const admin = "spiffe://cluster.local/ns/ops/sa/admin"
	g := New(meshnames.DefaultDeny)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultDeny, Rules: []api.AuthorizationRule{
		{Name: "shop/admin", Port: 80, PathPrefixes: []string{"/admin"}, Identities: []string{admin}},
		{Name: "shop/api", Port: 80, PathPrefixes: []string{"/api/"}, Identities: []string{"*"}},
	}})
	f.Fuzz(func(t *testing.T, line string) {
		// As the proxy sees the request: net/http's parse of the request
		// line; what it forwards is the escaped path.
		u, err := url.ParseRequestURI(line)
		if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
			return // refused by net/http, or not origin-form
		}
		sent := u.EscapedPath()
		req := Request{Port: 80, HTTP: true, Path: u.Path, RawPath: sent, ClientID: client}
		allowed := g.Admit(req).Allowed()
		if allowed {
			for _, m := range pathModels {
				routed, ok := m.route(sent)
				if !ok {
					continue // the server refuses it: nothing is served
				}
				if underPrefix(m, routed, "admin") {
					t.Fatalf("bypass: %q (sent as %q) is allowed to %s, but %s routes it to %q, under /admin", line, sent, client, m.name, routed)
				}
				if m.normalize && !underPrefix(m, routed, "api") {
					t.Fatalf("ambiguous: %q (sent as %q) is allowed under /api, but %s routes it to %q", line, sent, m.name, routed)
				}
			}
		}
		if plainPath.MatchString(sent) {
			top, _, _ := strings.Cut(sent[1:], "/")
			if top == "api" && !allowed {
				t.Fatalf("plain path %q under /api refused", sent)
			}
			req.ClientID = admin
			if got := g.Admit(req).Allowed(); top == "admin" && !got {
				t.Fatalf("plain path %q refused to the admin", sent)
			}
		}
	})
}

// TestDotSegmentsDoNotBypassPrefixes: /admin/../api/x is /api/x to servers
// that resolve dot segments but goes to the /admin routes of those that
// route the path as sent (Envoy by default, Express): a client allowed
// only under /api may not send it. Paths whose dot segments stay under
// /api either way, and probes, are unaffected.
func TestDotSegmentsDoNotBypassPrefixes(t *testing.T) {
	g := apiGuard()
	for raw, want := range map[string]bool{
		"/admin/../api/x":      false,
		"/admin/x/../../api/x": false,
		"/admin/./../api":      false,
		"/admin/%2e%2e/api/x":  false,
		"/api/a/../b":          true,
		"/api/./x":             true,
		"/api/x/..":            true,
	} {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Admit(Request{Port: 80, HTTP: true, Path: u.Path, RawPath: u.EscapedPath(), ClientID: client}).Allowed(); got != want {
			t.Errorf("%q: allowed %v, want %v", raw, got, want)
		}
		if got := g.Admit(Request{Port: 80, HTTP: true, Path: u.Path, ClientID: client}).Allowed(); got != want {
			t.Errorf("%q without the raw path: allowed %v, want %v", raw, got, want)
		}
	}
	if !g.Admit(Request{Port: 80, HTTP: true, RawPath: "/x/../healthz", FromNode: true}).Allowed() {
		t.Error("the probe /healthz sent as /x/../healthz is no longer one")
	}
}
