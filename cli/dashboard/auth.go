package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// NewToken is a random token for Server.Token: 128 random bits, as
// URL-safe text.
func NewToken() string { return rand.Text() }

// tokenCookie names the cookie that carries the token for the server at
// host (a cookie is shared by every port of a host, so the port is in the
// name: two dashboards do not log each other out).
func tokenCookie(host string) string {
	_, port, err := net.SplitHostPort(host)
	if err != nil || port == "" {
		port = "80"
	}
	return "meshctl-dashboard-" + port
}

// authenticated reports whether r carries the server's Token: in its
// cookie, in an "Authorization: Bearer" header (scripts), or as the
// token query parameter. A page opened with the parameter (the address
// `meshctl dashboard` prints) gets the cookie and is sent to the same
// address without it, out of the address bar. Otherwise it answers 401 and
// returns false. Without a Token every request is authenticated.
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) bool {
	if s.Token == "" {
		return true
	}
	name := tokenCookie(r.Host)
	// Every cookie of the name: another origin on this host may plant one
	// with a narrower path, which the browser sends first.
	for _, c := range r.CookiesNamed(name) {
		if s.tokenIs(c.Value) {
			return true
		}
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenIs(v) {
		return true
	}
	q := r.URL.Query()
	if !s.tokenIs(q.Get("token")) {
		s.Log.Warn("dashboard: request refused: it carries no valid token", "path", r.URL.Path, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "this dashboard needs its token: open the address `meshctl dashboard` printed, or send \"Authorization: Bearer TOKEN\"")
		return false
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return true
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: s.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	q.Del("token")
	// To this server's own path only: "//evil.example/" would otherwise be
	// a redirect to another site.
	to := url.URL{Path: "/" + strings.TrimLeft(path.Clean(r.URL.Path), "/"), RawQuery: q.Encode()}
	http.Redirect(w, r, to.RequestURI(), http.StatusSeeOther)
	return false
}

// tokenIs compares in constant time.
func (s *Server) tokenIs(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(s.Token)) == 1
}
