package h1

import "bytes"

// Response is a response head parsed in place. Reuse one per connection:
// Parse resets it, and its Fields keep their capacity.
type Response struct {
	// MaxFields bounds the header fields (0: DefaultMaxFields).
	MaxFields int

	// Minor is the version's minor digit: HTTP/1.<Minor>.
	Minor int
	// Status is the status code, 100 to 999; Reason the reason phrase.
	Status int
	Reason []byte
	// Fields are the header fields in their order, every one.
	Fields []Field
	// Framing and ContentLength say where the body ends.
	Framing       Framing
	ContentLength int64
	// KeepAlive: the connection may carry another exchange after this one.
	KeepAlive bool
	// Upgrade is the Upgrade field's value when Connection names upgrade.
	Upgrade []byte
}

func (r *Response) reset() {
	fields := r.Fields[:0]
	*r = Response{MaxFields: r.MaxFields, Fields: fields, ContentLength: -1}
}

// Parse parses the response head at the start of b, the answer to a HEAD
// request when head is set (no body, whatever the fields say). It returns
// the head's length, ErrIncomplete, or an *Error (a proxy answers its own
// client 502 and closes the upstream connection).
func (r *Response) Parse(b []byte, head bool) (int, error) {
	r.reset()
	line, pos, err := nextLine(b, 0)
	if err == errBareCR {
		return 0, errStatusForm // net/http keeps a CR in the reason phrase
	}
	if err != nil {
		return 0, forResponse(err)
	}
	if err := r.parseStatusLine(line); err != nil {
		return 0, err
	}
	var fs fieldSection
	if r.Fields, pos, err = fs.parse(b, pos, r.MaxFields, r.Fields); err != nil {
		return 0, forResponse(err)
	}
	r.ContentLength = fs.length
	http11 := r.Minor >= 1
	framing, err := fs.framing(http11)
	if err != nil {
		return 0, forResponse(err)
	}
	r.KeepAlive, r.Upgrade = fs.connection(r.Fields, http11)
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		// No body, whatever the fields say (a HEAD's Content-Length is the
		// GET's).
		r.Framing = NoBody
	case framing == Length && r.ContentLength == 0:
		r.Framing = NoBody
	default:
		r.Framing = framing
	}
	if r.Framing == UntilClose {
		r.KeepAlive = false
	}
	if r.Framing != Length {
		r.ContentLength = -1
		if r.Framing == NoBody {
			r.ContentLength = 0
		}
	}
	return pos, nil
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT [SP reason]".
func (r *Response) parseStatusLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return errStatusLine
	}
	major, minor, ok := parseVersion(line[:sp])
	if !ok {
		return errStatusLine
	}
	rest := line[sp+1:]
	// What net/http reads as the code: after any spaces, up to the next,
	// three characters that strconv.Atoi reads as a number from 0.
	status := bytes.TrimLeft(rest, " ")
	code, _, _ := bytes.Cut(status, []byte(" "))
	n, ok := statusCode(code)
	switch {
	case !ok:
		return errStatusLine
	case major != 1:
		return errResponseVersion
	case len(status) != len(rest) || n < 100 || !isDigit(code[0]):
		return errStatusForm // spaces before the code, a sign, a code under 100
	}
	r.Minor, r.Status = minor, n
	if len(status) > 3 {
		r.Reason = status[4:]
		if !validValue(r.Reason) {
			return errStatusForm
		}
	}
	return nil
}

// statusCode reads three characters as strconv.Atoi would (an optional
// sign, digits), ok only for a number from 0.
func statusCode(c []byte) (int, bool) {
	if len(c) != 3 {
		return 0, false
	}
	sign, digits := 1, c
	switch c[0] {
	case '+':
		digits = c[1:]
	case '-':
		sign, digits = -1, c[1:]
	}
	n := 0
	for _, d := range digits {
		if !isDigit(d) {
			return 0, false
		}
		n = n*10 + int(d-'0')
	}
	n *= sign
	return n, n >= 0
}

// forResponse is a refusal of a response head: the same reason, answered
// 502 (the client's request was not at fault); a field name net/http's
// response reader keeps (one with a space) is a strict refusal there.
func forResponse(err error) error {
	if err == errFieldName {
		return errResponseFieldName
	}
	if e, ok := err.(*Error); ok {
		if re, ok := responseErrors[e]; ok {
			return re
		}
	}
	return err
}
