package h1

import "golang.org/x/net/http/httpguts"

// trimOWS drops the spaces and tabs around a field value.
func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// validValue: visible characters, spaces, tabs and obs-text (bytes from
// 0x80); no other control character.
func validValue(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// equalFold compares b with the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the list v (tokens separated by commas, spaces
// or tabs) holds the lower-case token, ignoring case.
func hasToken(v []byte, token string) bool {
	for start := 0; start < len(v); {
		for start < len(v) && isTokenBoundary(v[start]) {
			start++
		}
		end := start
		for end < len(v) && !isTokenBoundary(v[end]) {
			end++
		}
		if equalFold(v[start:end], token) {
			return true
		}
		start = end
	}
	return false
}

// listHas reports whether the comma-separated list v holds the lower-case
// token as one of its elements (whitespace around elements ignored),
// ignoring case.
func listHas(v []byte, token string) bool {
	for len(v) > 0 {
		elem := v
		if i := indexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if equalFold(trimOWS(elem), token) {
			return true
		}
	}
	return false
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func isTokenBoundary(c byte) bool { return c == ' ' || c == ',' || c == '\t' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// validName: a field name is a token.
func validName(b []byte) bool { return len(b) > 0 && httpguts.ValidHeaderFieldName(str(b)) }
