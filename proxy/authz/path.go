package authz

import (
	pathpkg "path"
	"strings"
)

// servedPath returns the path the application will serve for a request, the
// one its path prefixes and probes are matched against, and false when the
// guard will not guess (the request then matches no prefix and no probe).
//
// The path is resolved the way Tomcat and Jetty resolve it, because they are
// the servers a mismatch here exposes: both separate segments on "/" and "\",
// drop each segment's ";" parameters and only then resolve "." and "..". So
// /api/..;/admin is /admin (not under /api), /api;jsessionid=1/users is
// /api/users and /api\..\admin is /admin.
//
// raw, when set, is the path as the client sent it, still percent-encoded;
// its segments are decoded after their parameters are dropped (as Tomcat
// does), so %2e%2e is "..". A path that cannot be decoded, or whose encoded
// bytes would be a separator or otherwise change how the application splits
// it, is refused: %2F and %5C (which some servers split on and some do not),
// %3B (a parameter to some, data to others), %25 (a second decoding is
// anyone's guess) and %00. Without raw, decoded (what net/http made of the
// path) is resolved as it is, with nothing decoded twice.
func servedPath(decoded, raw string) (string, bool) {
	if raw != "" {
		return resolvePath(raw, true)
	}
	if decoded == "" {
		return "", true
	}
	return resolvePath(decoded, false)
}

// resolvePath does servedPath's work on p, decoding it when escaped.
func resolvePath(p string, escaped bool) (string, bool) {
	if !strings.ContainsAny(p, "%;\\\x00") {
		// The common case: nothing but dot segments and repeated slashes to
		// resolve, and no allocation when there are none.
		return cleanPath(p), true
	}
	// Parameters count too: a server that decodes before it splits finds
	// their encoded slashes.
	if _, ok := unescape(p); escaped && !ok {
		return "", false
	}
	segs := strings.Split(strings.ReplaceAll(p, `\`, "/"), "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		if escaped {
			s, _ = unescape(s)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return "", false
		}
		segs[i] = s
	}
	// Decoded segments hold no separator, so joining and cleaning resolves
	// exactly their dot segments (including decoded ones: %2e%2e).
	return cleanPath(strings.Join(segs, "/")), true
}

// unescape percent-decodes s, refusing bad escapes and the bytes that would
// change how a path splits or decodes (see servedPath).
func unescape(s string) (string, bool) {
	n := strings.Count(s, "%")
	if n == 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		switch c := hi<<4 | lo; c {
		case '/', '\\', ';', '%', 0:
			return "", false
		default:
			b = append(b, c)
		}
		i += 2
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// matchPath reports whether path is under one of the prefixes, by whole
// segments: /api covers /api and /api/x, not /apix. A rule without prefixes
// covers every request; one with prefixes covers no connection that is not
// HTTP, and of the paths servedPath refused (ok false) only "/" covers them.
func matchPath(prefixes []string, path string, http, ok bool) bool {
	if len(prefixes) == 0 {
		return true
	}
	if !http {
		return false
	}
	for _, pre := range prefixes {
		pre = strings.TrimSuffix(pre, "/")
		if pre == "" || ok && (path == pre || strings.HasPrefix(path, pre+"/")) {
			return true
		}
	}
	return false
}

// cleanPath resolves dot segments and repeated slashes, keeping a
// trailing slash.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	c := pathpkg.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
