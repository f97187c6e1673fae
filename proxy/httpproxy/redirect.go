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
func redirect(rec *recorder, r *http.Request, route *endpoints.Route) {
	rd := route.Redirect
	status := rd.StatusCode
	if status == 0 {
		status = http.StatusFound
	}
	rec.Header().Set("Location", redirectLocation(r, rd, route.Match))
	rec.WriteHeader(status)
}

// redirectLocation builds a redirect's Location from the request's URL:
//   - scheme: the redirect's, else the request's (http for the plaintext
//     requests an outbound proxy sees);
//   - hostname: the redirect's, else the request's Host without its port;
//   - port: the redirect's Port; else the scheme's default when the
//     redirect sets a scheme; else the request's own port (that of its Host
//     header, none when it has none); left out when it is the scheme's
//     default (80 for http, 443 for https);
//   - path: as the redirect's path modifier says, else the request's;
//   - the query is kept.
func redirectLocation(r *http.Request, rd *api.Redirect, match api.RouteMatch) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	reqHost, reqPort := splitHost(r.Host)
	host, port := reqHost, reqPort
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
		if p, ok := modifyPath(rd.Path, match, r.URL.Path); ok {
			u.Path, u.RawPath = p, ""
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
