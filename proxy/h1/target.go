package h1

import (
	"bytes"
	"net/netip"
)

// parseTarget checks the request target: origin-form ("/path?query"),
// "*", or absolute-form "http://host[:port]/path?query". CONNECT's
// authority-form and other absolute forms (userinfo, opaque URIs, other
// schemes) are refused: the mesh has no use for them.
func (r *Request) parseTarget() error {
	t := r.Target
	if len(t) == 0 {
		return errTarget
	}
	for _, c := range t {
		if c < 0x20 || c == 0x7f {
			return errTarget
		}
	}
	switch {
	case t[0] == '/':
		return validPath(t)
	case string(r.Method) == "CONNECT":
		return errTargetForm
	case len(t) == 1 && t[0] == '*':
		return nil
	}
	return r.parseAbsolute(t)
}

// parseAbsolute reads "http(s)://host[:port][/path][?query]".
func (r *Request) parseAbsolute(t []byte) error {
	colon := bytes.IndexByte(t, ':')
	if colon <= 0 {
		return errTarget
	}
	scheme := t[:colon]
	if !validScheme(scheme) {
		return errTarget // not a URI at all (net/url refuses it too)
	}
	if !equalFold(scheme, "http") && !equalFold(scheme, "https") {
		return errTargetForm
	}
	rest := t[colon+1:]
	if len(rest) < 2 || rest[0] != '/' || rest[1] != '/' {
		return errTargetForm
	}
	rest = rest[2:]
	end := bytes.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if !validAuthority(authority) {
		return errTargetForm
	}
	r.authority = authority
	if end < len(rest) && rest[end] == '/' {
		return validPath(rest[end:])
	}
	return nil
}

// validAuthority: a host (letters, digits, '-', '.', '_', '~', or an IPv6
// address in brackets) and an optional ":port" of digits. No userinfo.
func validAuthority(a []byte) bool {
	host, port := a, []byte(nil)
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		for _, c := range a[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return false // before ParseAddr, whose errors allocate
			}
		}
		ip, err := netip.ParseAddr(str(a[1:end]))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		host, port = nil, a[end+1:]
	} else if i := bytes.IndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i:]
	}
	if host != nil {
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if !isAlnum(c) && c != '-' && c != '.' && c != '_' && c != '~' {
				return false
			}
		}
	}
	if len(port) > 0 {
		if port[0] != ':' {
			return false
		}
		for _, c := range port[1:] {
			if !isDigit(c) {
				return false
			}
		}
	}
	return true
}

// validPath checks a target's path (up to its '?') for well-formed
// percent-escapes, as net/url does.
func validPath(t []byte) error {
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		t = t[:q]
	}
	for i := 0; i < len(t); i++ {
		if t[i] == '%' {
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return errTarget
			}
			i += 2
		}
	}
	return nil
}

// validScheme: a letter, then letters, digits, '+', '-' or '.'.
func validScheme(s []byte) bool {
	if len(s) == 0 || isDigit(s[0]) || !isAlnum(s[0]) {
		return false
	}
	for _, c := range s {
		if !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}
