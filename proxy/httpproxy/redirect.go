package httpproxy

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

// redirect answers a request its route redirects, from the client's proxy:
// nothing goes upstream.
func redirect(rec *recorder, r *http.Request, route *endpoints.Route, servicePort uint16) {
	rd := route.Redirect
	status := rd.StatusCode
	if status == 0 {
		status = http.StatusFound
	}
	rec.Header().Set("Location", redirectLocation(r, rd, route.Match, servicePort))
	rec.WriteHeader(status)
}

// redirectLocation builds a redirect's Location from the request's URL:
//   - scheme: the redirect's, else the request's (http for the plaintext
//     requests an outbound proxy sees);
//   - hostname: the redirect's, else the request's Host without its port;
//   - port: the redirect's Port; else the scheme's default when the
//     redirect sets a scheme; else the Service port the request was sent to
//     (the mesh's "listener" port; servicePort, when not 0), else that of
//     its Host header; left out when it is the scheme's default (80 for
//     http, 443 for https);
//   - path: as the redirect's path modifier says (on the path as sent: an
//     escaped "/" stays one), else the request's;
//   - the query is kept.
func redirectLocation(r *http.Request, rd *api.Redirect, match api.RouteMatch, servicePort uint16) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	reqHost, reqPort := splitHost(r.Host)
	host, port := reqHost, reqPort
	if servicePort != 0 {
		port = strconv.Itoa(int(servicePort))
	}
	if rd.Scheme != "" {
		scheme = strings.ToLower(rd.Scheme)
		port = ""
	}
	if rd.Hostname != "" {
		host = rd.Hostname
	}
	if rd.Port != 0 {
		port = strconv.Itoa(rd.Port)
	}
	if port == defaultPort(scheme) {
		port = ""
	}
	u := url.URL{Scheme: scheme, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if rd.Path != nil {
		if p, ok := modifyPath(rd.Path, match, r.URL.EscapedPath()); ok {
			if unescaped, err := url.PathUnescape(p); err == nil {
				u.Path, u.RawPath = unescaped, p
			}
		}
	}
	switch {
	case port != "":
		u.Host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		u.Host = "[" + host + "]" // an IPv6 address
	default:
		u.Host = host
	}
	return u.String()
}

// splitHost splits a Host header into its hostname and port ("" when it
// has none).
func splitHost(hostport string) (host, port string) {
	u := url.URL{Host: hostport}
	return u.Hostname(), u.Port()
}

// defaultPort is a scheme's well-known port.
func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
