package authz

import (
	"net/url"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// pathCases are request paths as sent on the wire and whether every
// application, however it resolves them, serves something under /api:
// Tomcat and Jetty (";" parameters dropped, "\" a separator, encoded dots
// decoded before dot segments are resolved) as much as Go, Express, nginx
// or Envoy (";" and "\" kept as data, and for some, encoded dots decoded
// only after dot segments are resolved).
var pathCases = []struct {
	raw      string
	underAPI bool
}{
	// Ordinary paths.
	{"/api", true},
	{"/api/", true},
	{"/api/users", true},
	{"/api/users/", true},
	{"//api//users", true},
	{"/api/a/../b", true},
	{"/api/users/.", true},
	{"/api/caf%C3%A9", true},
	{"/api/a%20b", true},
	{"/apix", false},
	{"/admin", false},
	{"/", false},
	{"/api/../admin", false},
	// Path parameters: one server drops them, another keeps them in the
	// segment's name, so only what is under /api either way is.
	{"/api/users;jsessionid=0123", true},
	{"/api/x;v=1/users", true},
	{"/api/x/..;/users", true},
	{"/api;x=1/users", false},
	{"/api;jsessionid=0123", false},
	{"/admin/..;/api/users", false},
	{"/admin/..;/api/x", false},
	{"/admin/.;/../api", false},
	{"/admin/..;x=1/api/x", false},
	{"/admin/x/..;/..;/api/x", false},
	{"/api/..;/admin", false},
	{"/api/..;x=1/admin", false},
	{"/api;/../admin", false},
	{"/api/x/..;/..;/admin", false},
	// Backslashes: a separator to one server, data to another.
	{`/api/x\y`, true},
	{`/api/x\..\y`, true},
	{`/api\users`, false},
	{`/admin\..\api\x`, false},
	{`/admin\..\api`, false},
	{`/api\..\admin`, false},
	{`/api/x\..\..\admin`, false},
	{`/api/x/..\..\admin`, false},
	// Encoded dots: decoded before dot segments are resolved by one
	// server, after by another.
	{"/api/users/%2e", true},
	{"/api/x/%2e%2e/y", true},
	{"/admin/%2e%2e/api/x", false},
	{"/admin/%2E%2E/api/x", false},
	{"/admin/.%2e/api/x", false},
	{"/admin/%2e./api/x", false},
	{"/admin/%2e%2e;/api/x", false},
	{`/admin\%2e%2e\api\x`, false},
	{"/admin/x/%2e%2e/%2e%2e/api", false},
	{"/api/%2e%2e/admin", false},
	{"/api/%2E%2E/admin", false},
	{"/api/.%2e/admin", false},
	{"/api/%2e%2e;/admin", false},
	// What might split differently, or decode again, is refused.
	{"/api%2f..%2fadmin", false},
	{"/api/x%2F..%2F..%2Fadmin", false},
	{"/api/x%5c..%5c..%5cadmin", false},
	{"/api/..%3b/admin", false},
	{"/admin/..%3b/api", false},
	{"/admin/..%3B/api/x", false},
	{"/admin/..%2f/api/x", false},
	{"/admin/..%5c/api/x", false},
	{"/api%3bx/users", false},
	{"/api/x%00.jsp", false},
	{"/api/x\x00.jsp", false},
	{"/api/%252e%252e/admin", false},
	{"/admin/%252e%252e/api/x", false},
	{"/api/users%2fme", false},
	{"/api;x=%2f../admin", false},
	// And what cannot be decoded.
	{"/api/%zz", false},
	{"/api/%", false},
	{"/api/%2", false},
	{"/api/%u002e%u002e/admin", false},
	{"/api;%/users", false},
}

// apiGuard allows every meshed client under /api on port 80 and nothing
// else; probes are allowed on /healthz.
func apiGuard() *Guard {
	g := New(meshnames.DefaultDeny)
	g.Update(api.InboundPolicy{
		Default: meshnames.DefaultDeny,
		Rules:   []api.AuthorizationRule{{Name: "shop/api", Port: 80, PathPrefixes: []string{"/api"}, Identities: []string{"*"}}},
		Probes:  []api.Probe{{Port: 80, Path: "/healthz"}},
	})
	return g
}

func TestPathPrefixesMatchWhatEveryServerServes(t *testing.T) {
	g := apiGuard()
	for _, tc := range pathCases {
		t.Run(tc.raw, func(t *testing.T) {
			// As the HTTP proxy sees it: net/http's decoded Path and the path
			// as sent.
			req := Request{Port: 80, HTTP: true, RawPath: tc.raw, ClientID: client}
			if u, err := url.ParseRequestURI(tc.raw); err == nil {
				req.Path = u.Path
			}
			if got := g.Admit(req).Allowed(); got != tc.underAPI {
				t.Errorf("raw path %q: allowed %v, want %v", tc.raw, got, tc.underAPI)
			}
			// Without the raw path, a path with nothing to decode is
			// decided the same.
			if !strings.Contains(tc.raw, "%") {
				if got := g.Admit(Request{Port: 80, HTTP: true, Path: tc.raw, ClientID: client}).Allowed(); got != tc.underAPI {
					t.Errorf("decoded path %q: allowed %v, want %v", tc.raw, got, tc.underAPI)
				}
			}
		})
	}
}

func TestProbePathsResolveLikeOtherPaths(t *testing.T) {
	g := apiGuard()
	for raw, want := range map[string]bool{
		"/healthz":           true,
		"/x/../healthz":      true,
		"/healthz;v=1":       false,
		`/x\..\healthz`:      false,
		"/x/..;/healthz":     false,
		"/x/%2e%2e/healthz":  false,
		"/x/.%2e/healthz":    false,
		"/healthz/.":         true,
		"/%68ealthz":         true,
		"/healthz/..;/admin": false,
		`/healthz\..\admin`:  false,
		"/healthz%2f":        false,
		"/healthz/%2e%2e/x":  false,
	} {
		if got := g.Admit(Request{Port: 80, HTTP: true, RawPath: raw, FromNode: true}).Allowed(); got != want {
			t.Errorf("probe from the node on %q: allowed %v, want %v", raw, got, want)
		}
	}
}

func TestARootPrefixCoversEvenRefusedPaths(t *testing.T) {
	g := New(meshnames.DefaultDeny)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultDeny, Rules: []api.AuthorizationRule{{Name: "all", PathPrefixes: []string{"/"}, Identities: []string{"*"}}}})
	for _, raw := range []string{"/x", "/a%2fb", "/%zz"} {
		if !g.Admit(Request{Port: 80, HTTP: true, RawPath: raw, ClientID: client}).Allowed() {
			t.Errorf("%q refused under the prefix /", raw)
		}
	}
}

// A server's way of resolving a path, for the references below, which do
// it independently of servedPath: split into segments, drop each segment's
// ";" parameters or not, percent-decode at some point, resolve "." and "..".
type server struct {
	backslash bool // "\" separates segments (Tomcat, Jetty), or is data
	params    bool // a segment's ";" parameters are dropped (Tomcat, Jetty), or are data
	decode    int  // when the path is percent-decoded
}

// When a server percent-decodes.
const (
	decodeFirst    = iota // the whole path, before splitting it
	decodeSegments        // each segment, after its parameters, before "." and ".." (Tomcat)
	decodeLast            // each segment, after "." and ".." (so %2e%2e is a name)
	decodeNever           // net/http did already
)

// servers are the servers of every kind, decoding as decodes says.
func servers(decodes ...int) []server {
	var ss []server
	for _, backslash := range []bool{false, true} {
		for _, params := range []bool{false, true} {
			for _, d := range decodes {
				ss = append(ss, server{backslash, params, d})
			}
		}
	}
	return ss
}

// reference resolves p as s would, into the segments of the path served,
// and false when the path does not decode.
func reference(p string, s server) (segs []string, ok bool) {
	decode := func(x string) (string, bool) {
		d, err := url.PathUnescape(x)
		return d, err == nil
	}
	if s.decode == decodeFirst {
		if p, ok = decode(p); !ok {
			return nil, false
		}
	}
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || s.backslash && r == '\\' }) {
		if s.params {
			seg, _, _ = strings.Cut(seg, ";")
		}
		if s.decode == decodeSegments {
			if seg, ok = decode(seg); !ok {
				return nil, false
			}
		}
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	if s.decode == decodeLast {
		for i := range segs {
			if segs[i], ok = decode(segs[i]); !ok {
				return nil, false
			}
		}
	}
	return segs, true
}

func under(segs []string, top string) bool { return len(segs) > 0 && segs[0] == top }

func FuzzPathMatch(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.raw)
	}
	g := apiGuard()
	encoded, decoded := servers(decodeFirst, decodeSegments, decodeLast), servers(decodeNever)
	f.Fuzz(func(t *testing.T, p string) {
		// The path as sent, percent-encoded: if it matches /api, every
		// server serves something under /api; if it is the probe's, every
		// server serves /healthz.
		allowed := g.Admit(Request{Port: 80, HTTP: true, RawPath: p, ClientID: client}).Allowed()
		probe := g.Admit(Request{Port: 80, HTTP: true, RawPath: p, FromNode: true}).Allowed()
		for _, s := range encoded {
			segs, ok := reference(p, s)
			if allowed && (!ok || !under(segs, "api")) {
				t.Fatalf("raw %q matches /api, but a server %+v serves %q (decodes: %v)", p, s, segs, ok)
			}
			if probe && (!ok || len(segs) != 1 || segs[0] != "healthz") {
				t.Fatalf("raw %q is the probe's /healthz, but a server %+v serves %q (decodes: %v)", p, s, segs, ok)
			}
		}
		// A path net/http already decoded.
		allowed = g.Admit(Request{Port: 80, HTTP: true, Path: p, ClientID: client}).Allowed()
		probe = g.Admit(Request{Port: 80, HTTP: true, Path: p, FromNode: true}).Allowed()
		for _, s := range decoded {
			segs, _ := reference(p, s)
			if allowed && !under(segs, "api") {
				t.Fatalf("decoded %q matches /api, but a server %+v serves %q", p, s, segs)
			}
			if probe && (len(segs) != 1 || segs[0] != "healthz") {
				t.Fatalf("decoded %q is the probe's /healthz, but a server %+v serves %q", p, s, segs)
			}
		}
	})
}
