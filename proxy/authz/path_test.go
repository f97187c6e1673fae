package authz

import (
	"net/url"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
)

// pathCases are request paths as sent on the wire and whether the
// application (resolving them as Tomcat does) serves something under /api.
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
	// Path parameters belong to their segment.
	{"/api;x=1/users", true},
	{"/api;jsessionid=0123", true},
	{"/admin/..;/api/users", true},
	{"/api/..;/admin", false},
	{"/api/..;x=1/admin", false},
	{"/api;/../admin", false},
	{"/api/x/..;/..;/admin", false},
	// Backslashes separate segments.
	{`/api\users`, true},
	{`/api\..\admin`, false},
	{`/api/x\..\..\admin`, false},
	{`/api/x/..\..\admin`, false},
	// Encoded dots are dots.
	{"/api/%2e%2e/admin", false},
	{"/api/%2E%2E/admin", false},
	{"/api/.%2e/admin", false},
	{"/api/%2e%2e;/admin", false},
	{"/api/users/%2e", true},
	// What might split differently, or decode again, is refused.
	{"/api%2f..%2fadmin", false},
	{"/api/x%2F..%2F..%2Fadmin", false},
	{"/api/x%5c..%5c..%5cadmin", false},
	{"/api/..%3b/admin", false},
	{"/api%3bx/users", false},
	{"/api/x%00.jsp", false},
	{"/api/%252e%252e/admin", false},
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
	g := New(Deny)
	g.Update(api.InboundPolicy{
		Default: Deny,
		Rules:   []api.AuthorizationRule{{Name: "shop/api", Port: 80, PathPrefixes: []string{"/api"}, Identities: []string{"*"}}},
		Probes:  []api.Probe{{Port: 80, Path: "/healthz"}},
	})
	return g
}

func TestPathPrefixesMatchWhatTomcatServes(t *testing.T) {
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
		"/healthz;v=1":       true,
		`/x\..\healthz`:      true,
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
	g := New(Deny)
	g.Update(api.InboundPolicy{Default: Deny, Rules: []api.AuthorizationRule{{Name: "all", PathPrefixes: []string{"/"}, Identities: []string{"*"}}}})
	for _, raw := range []string{"/x", "/a%2fb", "/%zz"} {
		if !g.Admit(Request{Port: 80, HTTP: true, RawPath: raw, ClientID: client}).Allowed() {
			t.Errorf("%q refused under the prefix /", raw)
		}
	}
}

// reference resolves a path as a Tomcat-like server would, independently of
// servedPath: segments split on "/" and "\", each segment's ";" parameters
// dropped, then "." and ".." resolved. decodeFirst percent-decodes the whole
// path before splitting (a server that decodes first); otherwise each
// segment is decoded after its parameters are dropped (Tomcat), and an
// encoded separator stays inside its segment. noDecode decodes nothing (the
// path is already decoded). ok is false when the path does not decode.
func reference(p string, decodeFirst, noDecode bool) (segs []string, ok bool) {
	if decodeFirst && !noDecode {
		d, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		p = d
	}
	for _, s := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if i := strings.Index(s, ";"); i >= 0 {
			s = s[:i]
		}
		if !decodeFirst && !noDecode {
			d, err := url.PathUnescape(s)
			if err != nil {
				return nil, false
			}
			s = d
		}
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
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
	f.Fuzz(func(t *testing.T, p string) {
		// The path as sent, percent-encoded.
		allowed := g.Admit(Request{Port: 80, HTTP: true, RawPath: p, ClientID: client}).Allowed()
		for _, decodeFirst := range []bool{false, true} {
			segs, ok := reference(p, decodeFirst, false)
			if allowed && (!ok || !under(segs, "api")) {
				t.Fatalf("raw %q matches /api, but a server (decode first: %v) serves %q (decodes: %v)", p, decodeFirst, segs, ok)
			}
			if allowed && ok && under(segs, "admin") {
				t.Fatalf("raw %q matches /api, but a server serves /admin", p)
			}
		}
		// A path net/http already decoded.
		allowed = g.Admit(Request{Port: 80, HTTP: true, Path: p, ClientID: client}).Allowed()
		if segs, _ := reference(p, false, true); allowed && (!under(segs, "api") || under(segs, "admin")) {
			t.Fatalf("decoded %q matches /api, but the server serves %q", p, segs)
		}
	})
}
