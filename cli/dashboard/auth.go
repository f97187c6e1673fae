package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"path"
	"strings"
	"time"
)

// NewToken is a random token for Server.Token: 128 random bits, as
// URL-safe text.
func NewToken() string { return rand.Text() }

// TokenParam is the fragment parameter that carries the token in the
// address `meshctl dashboard` prints (http://127.0.0.1:50750/#/topology?token=…).
// A fragment never leaves the browser: not in a request, a server's log or
// a Referer. The page keeps the token in its tab's sessionStorage, which
// belongs to the dashboard's origin alone, and sends it as
// "Authorization: Bearer". There is no cookie: a browser sends the cookies
// of 127.0.0.1 to every port of 127.0.0.1, another user's server included.
const TokenParam = "token"

// refusalLogEvery spaces the warnings about refused requests: a client
// that retries in a loop gets one line per interval, not one per request.
const refusalLogEvery = 10 * time.Second

// authenticated reports whether r may be answered. The page's own files
// (the HTML, scripts and styles embedded in the binary) are public; the
// API answers only a request with "Authorization: Bearer TOKEN". Otherwise
// it answers 401 and returns false. Without a Token every request is
// authenticated.
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) bool {
	if s.Token == "" || !isAPIPath(r.URL.Path) {
		return true
	}
	// The scheme's name is case-insensitive (RFC 9110).
	if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && s.tokenIs(v) {
		return true
	}
	s.refuse(w, http.StatusUnauthorized, "this dashboard needs its token: open the address `meshctl dashboard` printed "+
		"(the token is in the part after #), or send \"Authorization: Bearer TOKEN\"",
		"an API request carries no valid token (\"Authorization: Bearer TOKEN\")", "path", r.URL.Path, "remote", r.RemoteAddr)
	return false
}

// refuse answers status with the message answer, and warns that a request
// was refused, why: at most one line per refusalLogEvery for every kind of
// refusal together (any web page the user visits can send requests here
// in a loop), with the count so far.
func (s *Server) refuse(w http.ResponseWriter, status int, answer, why string, attrs ...any) {
	n := s.refused.Add(1)
	s.refusalLog.Do(func() {
		s.Log.Warn("dashboard: request refused: "+why, append(attrs, "refused_so_far", n)...)
	})
	writeError(w, status, answer)
}

// isAPIPath reports whether p is, or cleans to, a path under /api (the
// mux sends "//api/x" and "/./api/x" there).
func isAPIPath(p string) bool {
	c := path.Clean("/" + p)
	return c == "/api" || strings.HasPrefix(c, "/api/")
}

// tokenIs compares in constant time.
func (s *Server) tokenIs(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(s.Token)) == 1
}
