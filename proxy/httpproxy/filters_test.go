package httpproxy

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

func TestEditHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
		edit *api.HeaderEdit
		want http.Header
	}{
		{"nil edit", http.Header{"A": {"1"}}, nil, http.Header{"A": {"1"}}},
		{"set replaces every value", http.Header{"X-Header-Set": {"old", "older"}}, &api.HeaderEdit{Set: []api.Header{{Name: "x-header-set", Value: "set-overwrites-values"}}},
			http.Header{"X-Header-Set": {"set-overwrites-values"}}},
		{"set adds an absent header", http.Header{}, &api.HeaderEdit{Set: []api.Header{{Name: "X-New", Value: "v"}}}, http.Header{"X-New": {"v"}}},
		{"add appends to an existing value", http.Header{"X-Header-Add": {"some-other-value"}}, &api.HeaderEdit{Add: []api.Header{{Name: "x-header-add", Value: "add-appends-values"}}},
			http.Header{"X-Header-Add": {"some-other-value,add-appends-values"}}},
		{"add to several values", http.Header{"X-A": {"1", "2"}}, &api.HeaderEdit{Add: []api.Header{{Name: "X-A", Value: "3"}}}, http.Header{"X-A": {"1,2,3"}}},
		{"add an absent header", http.Header{}, &api.HeaderEdit{Add: []api.Header{{Name: "X-Header-Add", Value: "v"}}}, http.Header{"X-Header-Add": {"v"}}},
		{"remove", http.Header{"X-Header-Remove": {"x"}, "Keep": {"k"}}, &api.HeaderEdit{Remove: []string{"x-header-remove"}}, http.Header{"Keep": {"k"}}},
		{"remove an absent header", http.Header{"Keep": {"k"}}, &api.HeaderEdit{Remove: []string{"X-Absent"}}, http.Header{"Keep": {"k"}}},
		{"set, then add, then remove", http.Header{}, &api.HeaderEdit{Set: []api.Header{{Name: "X-A", Value: "1"}}, Add: []api.Header{{Name: "X-A", Value: "2"}, {Name: "X-B", Value: "b"}}, Remove: []string{"X-B"}},
			http.Header{"X-A": {"1,2"}}},
	} {
		editHeaders(tc.in, tc.edit)
		if !reflect.DeepEqual(tc.in, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.in, tc.want)
		}
	}
}

func TestModifyPath(t *testing.T) {
	prefix := func(p string) api.RouteMatch { return api.RouteMatch{Path: p, PathType: "PathPrefix"} }
	full := func(v string) *api.PathModifier { return &api.PathModifier{Type: replaceFullPath, Value: v} }
	pre := func(v string) *api.PathModifier { return &api.PathModifier{Type: replacePrefixMatch, Value: v} }
	for _, tc := range []struct {
		m     *api.PathModifier
		match api.RouteMatch
		path  string
		want  string
		ok    bool
	}{
		{full("/one"), prefix("/full"), "/full/path/x", "/one", true},
		{full(""), api.RouteMatch{}, "/x", "/", true},
		{pre("/one"), prefix("/prefix/one"), "/prefix/one/two", "/one/two", true},
		{pre("/one"), prefix("/prefix/one"), "/prefix/one", "/one", true},
		{pre("/one"), prefix("/prefix/one"), "/prefix/one/", "/one/", true},
		{pre("/"), prefix("/strip-prefix"), "/strip-prefix/x", "/x", true},
		{pre("/"), prefix("/strip-prefix"), "/strip-prefix", "/", true},
		{pre("/"), prefix("/strip-prefix"), "/strip-prefix/", "/", true},
		{pre(""), prefix("/foo"), "/foo/bar", "/bar", true},
		{pre("/xyz/"), prefix("/foo"), "/foo/bar", "/xyz/bar", true},
		{pre("/xyz"), prefix("/foo/"), "/foo/bar", "/xyz/bar", true},
		{pre("/xyz"), prefix("/"), "/bar", "/xyz/bar", true},
		{pre("/xyz"), api.RouteMatch{}, "/bar", "/xyz/bar", true},
		{pre("/xyz"), prefix("/foo"), "/foobar", "/foobar", false},
		{&api.PathModifier{Type: "Other", Value: "/x"}, api.RouteMatch{}, "/a", "/a", false},
	} {
		got, ok := modifyPath(tc.m, tc.match, tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s %q on %q (match %q): %q, %v; want %q, %v", tc.m.Type, tc.m.Value, tc.path, tc.match.Path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	prefix := api.RouteMatch{Path: "/original-prefix", PathType: "PathPrefix"}
	for _, tc := range []struct {
		name        string
		host        string
		target      string
		rd          api.Redirect
		want        string
		servicePort uint16
	}{
		{"nothing set keeps the request's URL", "echo", "/a?x=1", api.Redirect{}, "http://echo/a?x=1", 0},
		{"the request's port is kept", "echo:8080", "/a", api.Redirect{}, "http://echo:8080/a", 0},
		{"the request's default port is left out", "echo:80", "/a", api.Redirect{}, "http://echo/a", 0},
		{"hostname keeps the request's port", "echo:8080", "/a", api.Redirect{Hostname: "example.org"}, "http://example.org:8080/a", 0},
		{"hostname", "echo", "/a", api.Redirect{Hostname: "example.org"}, "http://example.org/a", 0},
		{"scheme https: its default port", "echo:8080", "/a", api.Redirect{Scheme: "https"}, "https://echo/a", 0},
		{"scheme http: its default port", "echo:8080", "/a", api.Redirect{Scheme: "http"}, "http://echo/a", 0},
		{"port", "echo", "/a", api.Redirect{Port: 8443}, "http://echo:8443/a", 0},
		{"port 80 on http is left out", "echo:8080", "/a", api.Redirect{Port: 80}, "http://echo/a", 0},
		{"port 443 on https is left out", "echo", "/a", api.Redirect{Scheme: "https", Port: 443}, "https://echo/a", 0},
		{"port 80 on https is kept", "echo", "/a", api.Redirect{Scheme: "https", Port: 80}, "https://echo:80/a", 0},
		{"port 443 on http is kept", "echo", "/a", api.Redirect{Port: 443}, "http://echo:443/a", 0},
		{"scheme, hostname and port", "echo", "/a?q=1", api.Redirect{Scheme: "https", Hostname: "example.org", Port: 8443}, "https://example.org:8443/a?q=1", 0},
		{"full path", "echo", "/original-prefix/lemon?x=y", api.Redirect{Path: &api.PathModifier{Type: replaceFullPath, Value: "/full-path-replacement"}}, "http://echo/full-path-replacement?x=y", 0},
		{"prefix", "echo", "/original-prefix/lemon", api.Redirect{Path: &api.PathModifier{Type: replacePrefixMatch, Value: "/replacement-prefix"}}, "http://echo/replacement-prefix/lemon", 0},
		{"IPv6 host", "[fd00::1]:8080", "/a", api.Redirect{}, "http://[fd00::1]:8080/a", 0},
		{"IPv6 host, default port", "[fd00::1]", "/a", api.Redirect{Scheme: "http"}, "http://[fd00::1]/a", 0},
		{"the Service port when the Host has none", "echo", "/a", api.Redirect{Hostname: "example.org"}, "http://example.org:8080/a", 8080},
		{"the Service port over the Host's", "echo:9999", "/a", api.Redirect{}, "http://echo:8080/a", 8080},
		{"the Service port 80 is left out", "echo", "/a", api.Redirect{}, "http://echo/a", 80},
		{"a scheme's default over the Service port", "echo", "/a", api.Redirect{Scheme: "https"}, "https://echo/a", 8080},
		{"a prefix keeps escaped slashes", "echo", "/original-prefix/a%2Fb", api.Redirect{Path: &api.PathModifier{Type: replacePrefixMatch, Value: "/new"}}, "http://echo/new/a%2Fb", 0},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Host: tc.host, URL: u}
		if got := redirectLocation(r, &tc.rd, prefix, tc.servicePort); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestFiltersEditWhatTheBackendAndTheClientSee(t *testing.T) {
	v1 := newEcho(t, "v1", nil)
	routes := []endpoints.RouteSpec{
		{
			Name: "shop/headers", Match: api.RouteMatch{Path: "/headers", PathType: "Exact"},
			RequestHeaders: &api.HeaderEdit{
				Set:    []api.Header{{Name: "X-Header-Set", Value: "set-overwrites-values"}},
				Add:    []api.Header{{Name: "X-Header-Add", Value: "add-appends-values"}},
				Remove: []string{"X-Header-Remove", "X-Absent"},
			},
			ResponseHeaders: &api.HeaderEdit{Set: []api.Header{{Name: "Content-Type", Value: "text/x-route"}}, Add: []api.Header{{Name: "X-Resp-Add", Value: "r"}}, Remove: []string{"X-Backend"}},
			Backends: []endpoints.BackendSpec{{Name: "v1.shop:80", Weight: 1, Endpoints: []endpoints.Endpoint{{Addr: v1.addr}},
				RequestHeaders: &api.HeaderEdit{Set: []api.Header{{Name: "X-Header-Set", Value: "by-the-backend"}}, Add: []api.Header{{Name: "X-Backend-Add", Value: "b"}}}}},
		},
		{Name: "shop/full", Match: api.RouteMatch{Path: "/full", PathType: "PathPrefix"}, Rewrite: &api.Rewrite{Hostname: "rewritten.example", Path: &api.PathModifier{Type: replaceFullPath, Value: "/one"}},
			Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1)}},
		{Name: "shop/prefix", Match: api.RouteMatch{Path: "/prefix/one", PathType: "PathPrefix"}, Rewrite: &api.Rewrite{Path: &api.PathModifier{Type: replacePrefixMatch, Value: "/one"}},
			Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1)}},
		{Name: "shop/strip", Match: api.RouteMatch{Path: "/strip-prefix", PathType: "PathPrefix"}, Rewrite: &api.Rewrite{Path: &api.PathModifier{Type: replacePrefixMatch, Value: "/"}},
			Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1)}},
		{Name: "shop/plain", Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1)}},
	}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, v1.addr), Config{})

	res, body := get(t, tp.url+"/headers", "X-Header-Add", "some-other-value", "X-Header-Set", "client", "X-Header-Remove", "gone", "X-Keep", "kept")
	e := decode(t, body)
	for name, want := range map[string]string{
		"X-Header-Add": "some-other-value,add-appends-values", "X-Header-Set": "by-the-backend", "X-Header-Remove": "", "X-Keep": "kept", "X-Backend-Add": "b",
	} {
		if got := e.Header.Get(name); got != want {
			t.Errorf("the backend saw %s: %q, want %q", name, got, want)
		}
	}
	if got := res.Header.Get("Content-Type"); got != "text/x-route" {
		t.Errorf("the client saw Content-Type: %q, want the route's", got)
	}
	if res.Header.Get("X-Resp-Add") != "r" || res.Header.Get("X-Backend") != "" {
		t.Errorf("response headers not edited: %v", res.Header)
	}

	for _, tc := range []struct{ path, wantPath, wantHost string }{
		{"/full/path?x=1", "/one", "rewritten.example"},
		{"/prefix/one/two", "/one/two", ""},
		{"/prefix/one", "/one", ""},
		{"/strip-prefix/x", "/x", ""},
		{"/strip-prefix", "/", ""},
		{"/strip-prefixed", "/strip-prefixed", ""}, // not a whole segment: the plain route
	} {
		res, body := get(t, tp.url+tc.path)
		e := decode(t, body)
		if res.StatusCode != 200 || e.Path != tc.wantPath {
			t.Errorf("%s: %d, the backend saw path %q, want %q", tc.path, res.StatusCode, e.Path, tc.wantPath)
		}
		if tc.wantHost != "" && e.Host != tc.wantHost {
			t.Errorf("%s: the backend saw host %q, want %q", tc.path, e.Host, tc.wantHost)
		}
		if tc.path == "/full/path?x=1" && e.Query != "x=1" {
			t.Errorf("the rewrite lost the query: %q", e.Query)
		}
	}
	// No filter: the request goes as it came, headers and all.
	_, body = get(t, tp.url+"/untouched", "X-Header-Add", "v")
	if e := decode(t, body); e.Path != "/untouched" || e.Header.Get("X-Header-Add") != "v" || e.Header.Get("X-Header-Set") != "" {
		t.Errorf("a route without filters changed the request: %+v", e)
	}
}

func TestARedirectIsAnsweredByTheClientsProxy(t *testing.T) {
	v1 := newEcho(t, "v1", nil)
	routes := []endpoints.RouteSpec{
		{Name: "shop/redirect", Match: api.RouteMatch{Path: "/original-prefix", PathType: "PathPrefix"},
			Redirect: &api.Redirect{Scheme: "https", Hostname: "example.org", Path: &api.PathModifier{Type: replacePrefixMatch, Value: "/replacement-prefix"}, StatusCode: 301},
			Backends: []endpoints.BackendSpec{to("v1.shop:80", v1.addr, 1)}},
		{Name: "shop/default", Match: api.RouteMatch{Path: "/302", PathType: "Exact"}, Redirect: &api.Redirect{Port: 8080}},
	}
	tp := serve(t, destination(t, "web.shop:80", nil, routes, v1.addr), Config{})
	res, _ := get(t, tp.url+"/original-prefix/lemon?a=b", "Host", "echo:8080")
	if res.StatusCode != 301 || res.Header.Get("Location") != "https://example.org/replacement-prefix/lemon?a=b" {
		t.Errorf("%d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = get(t, tp.url+"/302", "Host", "echo")
	if res.StatusCode != 302 || res.Header.Get("Location") != "http://echo:8080/302" {
		t.Errorf("%d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if n := v1.count.Load(); n != 0 {
		t.Errorf("a redirected request reached the backend (%d)", n)
	}
}

// TestRewriteKeepsEscapedSlashes: a prefix rewrite works on the path as
// sent, so an escaped "/" inside a segment stays one (it must not become a
// new segment the backend would route or authorize differently).
func TestRewriteKeepsEscapedSlashes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/prefix/a%2Fb?q=1", "/one/a%2Fb?q=1"},
		{"/prefix/plain/x", "/one/plain/x"},
		{"/prefix/sp%20ace", "/one/sp%20ace"},
	} {
		u, err := url.Parse("http://web" + tc.in)
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Method: http.MethodGet, URL: u, Host: "web", Header: http.Header{}}
		rewrite(r, &endpoints.Route{
			Match:   api.RouteMatch{Path: "/prefix", PathType: "PathPrefix"},
			Rewrite: &api.Rewrite{Path: &api.PathModifier{Type: "ReplacePrefixMatch", Value: "/one"}},
		})
		if got := r.URL.RequestURI(); got != tc.want {
			t.Errorf("%s rewritten to %s, want %s", tc.in, got, tc.want)
		}
	}
}
