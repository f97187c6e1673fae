// Package h1 is mesh-proxy's HTTP/1.1 codec for the application-facing
// sides: it parses request and response heads in place, in the caller's
// buffer, without allocating (names, values, the method and the target are
// slices of that buffer, valid until it is reused), and decodes chunked
// bodies as a stream.
//
// It is strict where a proxy must be (RFC 9112 allows a recipient to
// refuse all of these, and a proxy that forwards one of them can be made to
// smuggle a request past the next hop): a head with a bare LF line ending,
// an obs-fold continuation line, Content-Length together with
// Transfer-Encoding, two Content-Length fields, a transfer coding other
// than chunked, a Transfer-Encoding in HTTP/1.0, whitespace between a field
// name and its colon, control characters in a value, or a request without
// exactly one valid Host is refused with the status to answer (400, or 501
// for a transfer coding it does not implement, 505 for a version it does
// not speak), and the connection is to be closed after it. Everything
// net/http's server accepts beyond those, it reads the same way: a
// differential fuzz target (FuzzRequestHeadAgainstNetHTTP) holds it to
// that.
package h1
