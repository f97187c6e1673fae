package h1

import (
	"bytes"
	"net/http"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// Header makes the http.Header of parsed fields, with their names in
// canonical form. One string holds every value, and a and b as well (a
// request's target and host, say, or a response's reason phrase), and one
// slice holds every value list, as net/http's reader does: three
// allocations and the map, whatever the field count.
func Header(fields []Field, a, b []byte) (h http.Header, aStr, bStr string) {
	size := len(a) + len(b)
	for _, f := range fields {
		size += len(f.Value)
	}
	all := make([]byte, 0, size)
	all = append(all, a...)
	all = append(all, b...)
	for _, f := range fields {
		all = append(all, f.Value...)
	}
	// all is never written again: the string may share its bytes.
	values := unsafe.String(unsafe.SliceData(all), len(all))
	aStr, bStr = values[:len(a)], values[len(a):len(a)+len(b)]
	off := len(a) + len(b)
	lists := make([]string, len(fields))
	h = make(http.Header, len(fields))
	for i, f := range fields {
		v := values[off : off+len(f.Value)]
		off += len(f.Value)
		key := CanonicalKey(f.Name)
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
			continue
		}
		lists[i] = v
		h[key] = lists[i : i+1 : i+1]
	}
	return h, aStr, bStr
}

// commonKeys are the canonical forms of the header names most messages
// carry, keyed by themselves and their lower-case forms: looking one up
// allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age", "Authorization",
		"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type",
		"Cookie", "Date", "Etag", "Expect", "Expires", "Forwarded", "Grpc-Status", "Grpc-Message", "Grpc-Timeout", "Host",
		"If-Match", "If-Modified-Since", "If-None-Match", "Keep-Alive", "Last-Modified", "Location", "Origin", "Pragma",
		"Range", "Referer", "Server", "Set-Cookie", "Te", "Traceparent", "Tracestate", "Trailer", "Transfer-Encoding", "Upgrade",
		"User-Agent", "Vary", "Via", "X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
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

// CanonicalKey returns the canonical form of a header name (as
// http.CanonicalHeaderKey), without allocating for the common ones.
func CanonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return http.CanonicalHeaderKey(string(name))
}

// MayEndHead reports whether b holds the end of a blank line, which is what
// ends a head (a bare LF's included, for the parser to refuse): a reader
// that gets a head in pieces parses it again only once this holds for
// the new piece, so a peer trickling a head a byte at a time costs a scan
// per byte, not a parse of everything it sent.
func MayEndHead(b []byte) bool {
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

// ConnectionClose reports whether a header's Connection field names the
// close option (in any of its values, any case).
func ConnectionClose(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "close")
}
