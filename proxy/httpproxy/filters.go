package httpproxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

// editHeaders applies a route's header edit to h, in the order Set, Add,
// Remove (as Gateway API's header modifiers): Set replaces every value of
// the name, Add appends its value to the existing ones in the same field,
// comma-separated ("a" + add "b" gives "a,b"), Remove deletes the name, if
// present. Names are case-insensitive. A nil edit changes nothing.
func editHeaders(h http.Header, e *api.HeaderEdit) {
	if e == nil {
		return
	}
	for _, s := range e.Set {
		h[http.CanonicalHeaderKey(s.Name)] = []string{s.Value}
	}
	for _, a := range e.Add {
		k := http.CanonicalHeaderKey(a.Name)
		if old := h[k]; len(old) > 0 {
			h[k] = []string{strings.Join(old, ",") + "," + a.Value}
		} else {
			h[k] = []string{a.Value}
		}
	}
	for _, name := range e.Remove {
		delete(h, http.CanonicalHeaderKey(name))
	}
}

// rewrite applies a route's URLRewrite to r before it is sent: the
// hostname replaces the request's Host (its authority over HTTP/2), the
// path is replaced whole or by the part the route's PathPrefix matched.
// The query is kept.
func rewrite(r *http.Request, route *endpoints.Route) {
	rw := route.Rewrite
	if rw == nil {
		return
	}
	if rw.Hostname != "" {
		r.Host = rw.Hostname
	}
	if rw.Path != nil {
		// On the path as sent: an escaped "/" (%2F) inside a segment stays
		// one, never a new segment.
		if p, ok := modifyPath(rw.Path, route.Match, r.URL.EscapedPath()); ok {
			if u, err := url.PathUnescape(p); err == nil {
				r.URL.Path, r.URL.RawPath = u, p
			}
		}
	}
}

// Path modifier types (api.PathModifier.Type).
const (
	replaceFullPath    = "ReplaceFullPath"
	replacePrefixMatch = "ReplacePrefixMatch"
)

// modifyPath returns path as m changes it. ReplacePrefixMatch replaces the
// whole segments the route's PathPrefix matched ("/" when the route has no
// prefix match): prefix /prefix/one with /one turns /prefix/one/two into
// /one/two; "/" on /strip-prefix turns /strip-prefix/x into /x and
// /strip-prefix into /. ok is false for an unknown type or a path the
// prefix does not match, which is left as it is.
func modifyPath(m *api.PathModifier, match api.RouteMatch, path string) (string, bool) {
	switch m.Type {
	case replaceFullPath:
		if m.Value == "" {
			return "/", true
		}
		return m.Value, true
	case replacePrefixMatch:
		prefix := "/"
		if match.PathType == "PathPrefix" {
			prefix = match.Path
		}
		rest, ok := endpoints.PrefixRest(prefix, path)
		if !ok {
			return path, false
		}
		p := strings.TrimSuffix(m.Value, "/") + rest
		if p == "" {
			p = "/"
		} else if p[0] != '/' {
			p = "/" + p
		}
		return p, true
	}
	return path, false
}
