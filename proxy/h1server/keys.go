package h1server

import "net/http"

// commonKeys are the canonical forms of the header names most requests
// carry, keyed by themselves and their lower-case forms: looking one up
// allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type",
		"Cookie", "Date", "Etag", "Expect", "Forwarded", "Grpc-Timeout", "Host",
		"If-Match", "If-Modified-Since", "If-None-Match", "Keep-Alive", "Origin", "Pragma",
		"Range", "Referer", "Te", "Traceparent", "Tracestate", "Transfer-Encoding", "Upgrade",
		"User-Agent", "Via", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id", "L5d-Dst-Override", "Meshctl-Orig-Proto",
	} {
		m[k] = k
		m[lower(k)] = k
	}
	return m
}()

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// canonicalKey returns the canonical form of a header name.
func canonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return http.CanonicalHeaderKey(string(name))
}
