package h2client

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2"
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
		name, ok := h2.Lower(k)
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
		name, ok := h2.Lower(k)
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
