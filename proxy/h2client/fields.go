package h2client

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// requestFields returns the request's head as HTTP/2 fields, or why it
// cannot be sent.
func requestFields(req *http.Request) ([]hpack.HeaderField, error) {
	if req.URL == nil {
		return nil, errors.New("h2client: request without a URL")
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil {
		return nil, fmt.Errorf("h2client: request host: %w", err)
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("h2client: invalid request host %q", host)
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("h2client: invalid method %q", method)
	}
	fields := make([]hpack.HeaderField, 0, 5+len(req.Header))
	fields = append(fields, hpack.HeaderField{Name: ":authority", Value: host}, hpack.HeaderField{Name: ":method", Value: method})
	if method != http.MethodConnect {
		path := req.URL.RequestURI()
		if !validPath(path) {
			return nil, fmt.Errorf("h2client: invalid request path %q", path)
		}
		scheme := req.URL.Scheme
		if scheme == "" {
			scheme = "http"
		}
		fields = append(fields, hpack.HeaderField{Name: ":path", Value: path}, hpack.HeaderField{Name: ":scheme", Value: scheme})
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			k = http.CanonicalHeaderKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, fmt.Errorf("h2client: invalid trailer key %q", k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fields = append(fields, hpack.HeaderField{Name: "trailer", Value: strings.Join(keys, ",")})
	}
	for k, vv := range req.Header {
		name, ok := lower(k)
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("h2client: invalid header name %q", k)
		}
		switch name {
		case "host", "content-length", "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive", "trailer":
			continue // :authority; set below; connection-specific; set above
		case "te":
			if len(vv) == 1 && strings.EqualFold(vv[0], "trailers") {
				fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			continue
		case "cookie":
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					return nil, fmt.Errorf("h2client: invalid value of header %q", k)
				}
				fields = appendCrumbs(fields, v)
			}
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("h2client: invalid value of header %q", k)
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v, Sensitive: sensitive(name, v)})
		}
	}
	length := req.ContentLength
	if req.Body == nil || req.Body == http.NoBody {
		length = 0
	} else if length == 0 {
		length = -1
	}
	if length > 0 || (length == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch)) {
		fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(length, 10)})
	}
	return fields, nil
}

// trailerFields returns a request's trailers as HTTP/2 fields.
func trailerFields(h http.Header) ([]hpack.HeaderField, error) {
	var fields []hpack.HeaderField
	for k, vv := range h {
		name, ok := lower(k)
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("h2client: invalid trailer name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("h2client: invalid value of trailer %q", k)
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return fields, nil
}

// appendCrumbs splits a Cookie value into its pairs, one field each.
func appendCrumbs(fields []hpack.HeaderField, v string) []hpack.HeaderField {
	for {
		i := strings.IndexByte(v, ';')
		if i < 0 {
			break
		}
		fields = append(fields, hpack.HeaderField{Name: "cookie", Value: v[:i], Sensitive: len(v[:i]) < 20})
		v = strings.TrimLeft(v[i+1:], " ")
	}
	if v != "" {
		fields = append(fields, hpack.HeaderField{Name: "cookie", Value: v, Sensitive: len(v) < 20})
	}
	return fields
}

// sensitive reports whether a field must never enter the HPACK table:
// short credentials, which a shared table would let other requests probe.
func sensitive(name, value string) bool {
	return len(value) < 20 && (name == "authorization" || name == "proxy-authorization")
}

// listSize is RFC 9113's size of a field list.
func listSize(fields []hpack.HeaderField) uint64 {
	var n uint64
	for _, f := range fields {
		n += uint64(f.Size())
	}
	return n
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return m != ""
}

// validPath is a :path an HTTP/2 server accepts: absolute, or "*".
func validPath(p string) bool {
	if p == "" || (p[0] != '/' && p != "*") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}

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

// lower returns a field name in lowercase; false if it is not ASCII.
func lower(name string) (string, bool) {
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

// canonical returns the canonical form of a received (lowercase) name.
func canonical(name string) string {
	if c, ok := canonicalOf[name]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}
