package h1

import (
	"bytes"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// Field is a header field: slices of the parsed buffer, the value without
// the whitespace around it.
type Field struct {
	Name, Value []byte
}

// Framing is how a message's body is delimited.
type Framing uint8

const (
	// NoBody: the message has no body.
	NoBody Framing = iota
	// Length: the body is ContentLength bytes.
	Length
	// Chunked: the body is in chunks (read it with a ChunkedReader).
	Chunked
	// UntilClose: the body runs until the connection closes (responses only).
	UntilClose
)

// DefaultMaxFields bounds the header fields of a head when Request.MaxFields is 0.
const DefaultMaxFields = 128

// Request is a request head parsed in place. Reuse one per connection:
// Parse resets it, and its Fields keep their capacity.
type Request struct {
	// MaxFields bounds the header fields (0: DefaultMaxFields); more is 431.
	MaxFields int

	Method, Target []byte
	// Minor is the version's minor digit: HTTP/1.<Minor>.
	Minor int
	// Fields are the header fields in their order, every one.
	Fields []Field
	// Host is the authority of an absolute-form target, else the Host
	// field's value (empty without one: HTTP/1.0).
	Host []byte
	// Framing and ContentLength say where the body ends.
	Framing       Framing
	ContentLength int64
	// KeepAlive: the connection may carry another request after this one.
	KeepAlive bool
	// Upgrade is the Upgrade field's value when Connection names upgrade.
	Upgrade []byte
	// ExpectContinue: the client waits for 100 Continue before its body.
	ExpectContinue bool

	authority []byte // of an absolute-form target
}

// ProtoAtLeast11 reports whether the request is HTTP/1.1 (or a later 1.x,
// which is read as 1.1).
func (r *Request) ProtoAtLeast11() bool { return r.Minor >= 1 }

func (r *Request) reset() {
	fields := r.Fields[:0]
	*r = Request{MaxFields: r.MaxFields, Fields: fields, ContentLength: -1}
}

// Parse parses the request head at the start of b. It returns the head's
// length (the body, or the next request, starts there), ErrIncomplete when
// b ends before the head does, or an *Error. Nothing is allocated: the
// slices in r point into b.
func (r *Request) Parse(b []byte) (int, error) {
	r.reset()
	line, pos, err := nextLine(b, 0)
	if err != nil {
		return 0, err
	}
	if err := r.parseRequestLine(line); err != nil {
		return 0, err
	}
	var fs fieldSection
	if r.Fields, pos, err = fs.parse(b, pos, r.MaxFields, r.Fields); err != nil {
		return 0, err
	}
	r.Host, r.ContentLength = fs.host, fs.length
	return pos, r.frame(&fs)
}

// frame checks the fields that decide where the request ends and what the
// connection does next, as net/http's server does, and more strictly
// where a proxy must.
func (r *Request) frame(fs *fieldSection) error {
	http11 := r.ProtoAtLeast11()
	connect := string(r.Method) == "CONNECT"
	switch {
	case fs.hosts > 1:
		return errHost
	case fs.hosts == 0 && http11 && !connect:
		return errHost
	case fs.hosts == 1 && !httpguts.ValidHostHeader(str(r.Host)):
		return errHost
	}
	if r.authority != nil { // an absolute-form target's authority wins
		r.Host = r.authority
	}
	var err error
	if r.Framing, err = fs.framing(http11); err != nil {
		return err
	}
	if r.Framing == UntilClose || r.Framing == Length && r.ContentLength == 0 {
		r.Framing, r.ContentLength = NoBody, 0 // a request without a length has no body
	}
	r.KeepAlive, r.Upgrade = fs.connection(r.Fields, http11)
	if len(fs.expect) > 0 {
		if !hasToken(fs.expect, "100-continue") {
			return errExpect
		}
		r.ExpectContinue = http11 && r.Framing != NoBody
	}
	return nil
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x".
func (r *Request) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return errRequestLine
	}
	r.Method, line = line[:sp], line[sp+1:]
	if sp = bytes.IndexByte(line, ' '); sp < 0 {
		return errRequestLine
	}
	r.Target, line = line[:sp], line[sp+1:]
	if len(r.Method) == 0 || !httpguts.ValidHeaderFieldName(str(r.Method)) {
		return errMethod
	}
	major, minor, ok := parseVersion(line)
	if !ok {
		return errVersion
	}
	if err := r.parseTarget(); err != nil {
		return err
	}
	if major != 1 {
		if major == 2 && minor == 0 && string(r.Method) == "PRI" && string(r.Target) == "*" {
			return errPreface
		}
		return errVersionSupport
	}
	r.Minor = minor
	return nil
}

// parseVersion reads "HTTP/d.d".
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != len("HTTP/1.1") || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// nextLine returns the line starting at pos without its CRLF, and where
// the next one starts.
func nextLine(b []byte, pos int) (line []byte, next int, err error) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		if bytes.IndexByte(b[pos:], '\r') >= 0 && b[len(b)-1] != '\r' {
			return nil, 0, errBareCR
		}
		return nil, 0, ErrIncomplete
	}
	line = b[pos : pos+i]
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return nil, 0, errBareLF
	}
	line = line[:len(line)-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, errBareCR
	}
	return line, pos + i + 1, nil
}

// parseLength reads a Content-Length: decimal digits, at most 2^63-1.
func parseLength(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, errContentLength
	}
	digits := v
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:] // leading zeros count for nothing (net/http reads "007" as 7)
	}
	if len(digits) > 19 {
		return 0, errContentLength
	}
	var n uint64
	for _, c := range v {
		if !isDigit(c) {
			return 0, errContentLength
		}
	}
	for _, c := range digits {
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<63-1 {
		return 0, errContentLength
	}
	return int64(n), nil
}

// str is b as a string for a call that does not keep it (no copy).
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
