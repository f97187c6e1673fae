package authz

import (
	pathpkg "path"
	"slices"
	"strings"
)

// servedPath returns the path the application will serve for a request, the
// one its path prefixes and probes are matched against, and false when the
// guard will not guess (the request then matches no prefix and no probe).
//
// Servers disagree on how a path resolves, and the guard does not know which
// one it stands in front of, so it resolves the path every way a server
// plausibly does and lets a request through only if every way agrees:
//
//   - "\" separates segments (Tomcat, Jetty), or is data (Go, Express,
//     nginx, Envoy);
//   - a segment's ";" parameters are dropped before "." and ".." are
//     resolved (Tomcat, Jetty), or are part of its name, so "..;" is no
//     dot segment (the others);
//   - encoded dots are decoded before "." and ".." are resolved, so %2e%2e
//     is "..", or only after, so it is a name.
//
// So /api/..;/admin, /api\..\admin and /api/%2e%2e/admin are under /api to
// some and /admin to others, and so are /admin/..;/api, /admin\..\api and
// /admin/%2e%2e/api: none of them is under either (see matchPath). Paths
// with none of "%", ";" and "\" resolve one way only, as path.Clean does.
//
// When the ways agree, the path returned is the path; when they do not, it
// is each distinct resolution, separated by NUL (which no path holds):
// matchPath wants every one under the prefix, and no probe's path is such a
// string.
//
// raw, when set, is the path as the client sent it, still percent-encoded.
// A path that cannot be decoded, or whose encoded bytes would be a
// separator or otherwise change how the application splits it, is refused:
// %2F and %5C (which some servers split on and some do not), %3B (a
// parameter to some, data to others), %25 (a second decoding is anyone's
// guess) and %00, and NUL itself. Without raw, decoded (what net/http made
// of the path) is resolved as it is, with nothing decoded twice.
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
		// resolve, the same for every server, and no allocation when there
		// are none.
		return cleanPath(p), true
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	// Parameters count too: a server that decodes before it splits finds
	// their encoded slashes.
	if _, ok := unescape(p); escaped && !ok {
		return "", false
	}
	var paths []string
	for _, backslash := range []bool{true, false} {
		for _, params := range []bool{true, false} {
			for _, dotsFirst := range []bool{true, false} {
				if !escaped && !dotsFirst {
					continue // nothing is decoded, before or after
				}
				if r := resolveAs(p, escaped, backslash, params, dotsFirst); !slices.Contains(paths, r) {
					paths = append(paths, r)
				}
			}
		}
	}
	return strings.Join(paths, "\x00"), true
}

// resolveAs resolves p one way: with "\" a separator or not, with each
// segment's ";" parameters dropped or not, and when escaped, decoding the
// segments before or after "." and ".." are resolved. p decodes (see
// resolvePath), and so does every part of it split on "/", "\" or ";".
func resolveAs(p string, escaped, backslash, params, dotsFirst bool) string {
	if backslash {
		p = strings.ReplaceAll(p, `\`, "/")
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if params {
			s, _, _ = strings.Cut(s, ";")
		}
		if escaped && dotsFirst {
			s, _ = unescape(s)
		}
		segs[i] = s
	}
	// Decoded segments hold no separator, so joining and cleaning resolves
	// exactly their dot segments (including decoded ones: %2e%2e).
	c := cleanPath(strings.Join(segs, "/"))
	if !escaped || dotsFirst {
		return c
	}
	// Resolved, then decoded: %2e%2e is a segment named "..".
	segs = strings.Split(c, "/")
	for i, s := range segs {
		segs[i], _ = unescape(s)
	}
	return strings.Join(segs, "/")
}

// withUnresolved adds to served (servedPath's answer for decoded and raw)
// the path as servers that route it as sent see it: decoded, repeated
// slashes merged, but "." and ".." left in. Envoy without normalize_path,
// Express and Fastify route /admin/../api/x to their /admin routes, while
// the others serve /api/x: such a path is under neither prefix (see
// matchPath). Path prefixes are matched against this; probes, which the
// kubelet sends as configured, against servedPath's.
func withUnresolved(served, decoded, raw string) string {
	p := decoded
	if raw != "" {
		p, _ = unescape(raw) // it decodes: servedPath accepted it
	}
	if p == "" || !strings.Contains(p, ".") {
		return served
	}
	segs := strings.Split(p, "/")
	kept := segs[:0]
	for _, s := range segs {
		if s != "" {
			kept = append(kept, s)
		}
	}
	u := "/" + strings.Join(kept, "/")
	if strings.HasSuffix(p, "/") && u != "/" {
		u += "/"
	}
	if slices.Contains(strings.Split(served, "\x00"), u) {
		return served
	}
	return served + "\x00" + u
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

// matchPath reports whether path (servedPath's) is under one of the
// prefixes, by whole segments: /api covers /api and /api/x, not /apix; when
// servers resolve the path differently, every resolution must be under the
// same prefix. A rule without prefixes covers every request; one with
// prefixes covers no connection that is not HTTP, and of the paths
// servedPath refused (ok false) only "/" covers them.
func matchPath(prefixes []string, path string, http, ok bool) bool {
	if len(prefixes) == 0 {
		return true
	}
	if !http {
		return false
	}
	for _, pre := range prefixes {
		pre = strings.TrimSuffix(pre, "/")
		if pre == "" || ok && allUnder(path, pre) {
			return true
		}
	}
	return false
}

// allUnder reports whether each of paths, separated by NUL, is pre or under
// it.
func allUnder(paths, pre string) bool {
	for {
		p, rest, more := strings.Cut(paths, "\x00")
		if !strings.HasPrefix(p, pre) || len(p) > len(pre) && p[len(pre)] != '/' {
			return false
		}
		if !more {
			return true
		}
		paths = rest
	}
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
