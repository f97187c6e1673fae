package h2

import (
	"net/textproto"
	"strings"
)

// commonFields are field names whose lowercase and canonical forms are
// looked up rather than computed (and allocated) per request.
var commonFields = []string{"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges",
	"age", "authorization", "cache-control", "content-disposition", "content-encoding", "content-language",
	"content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
	"expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-unmodified-since",
	"last-modified", "link", "location", "max-forwards", "origin", "proxy-authenticate", "proxy-authorization",
	"range", "referer", "refresh", "retry-after", "server", "set-cookie", "strict-transport-security",
	"trailer", "transfer-encoding", "user-agent", "vary", "via", "www-authenticate", "x-forwarded-for",
	"x-forwarded-proto", "x-request-id", "grpc-status", "grpc-message", "grpc-encoding", "grpc-accept-encoding",
	"grpc-timeout", "te", "traceparent", "tracestate", "l5d-dst-canonical", "meshctl-orig-proto", "upgrade",
	"connection", "keep-alive", "proxy-connection", "x-content-type-options", "access-control-allow-origin"}

var (
	lowerOf     = map[string]string{}
	canonicalOf = map[string]string{}
)

func init() {
	for _, f := range commonFields {
		c := textproto.CanonicalMIMEHeaderKey(f)
		lowerOf[c] = f
		canonicalOf[f] = c
	}
}

// Lower returns a field name in lowercase; false if it is not ASCII.
func Lower(name string) (string, bool) {
	if l, ok := lowerOf[name]; ok {
		return l, true
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "", false
		}
	}
	return strings.ToLower(name), true
}

// Canonical returns the canonical form of a received (lowercase) name.
func Canonical(name string) string {
	if c, ok := canonicalOf[name]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}
