// Package h2server is mesh-proxy's HTTP/2 server: for the meshed hop (the
// requests another proxy sends over mutual TLS, ALPN meshctl/h2) and for
// applications' prior-knowledge h2c, served to the proxy's handler. It is built on golang.org/x/net/http2's Framer
// and hpack, in place of net/http's server, so that responses batch.
//
// ServeConn's goroutine reads the connection; one writer goroutine per
// connection writes it; each request runs its handler in a goroutine of
// its own, as http.Handler requires. Handlers never touch the socket: a
// response's head and body chunks are queued under the connection's lock,
// and the writer, after yielding once so that the handlers the same
// network poll woke can queue theirs, encodes every frame queued into one
// 16 KiB buffer and writes it when it fills and once at the end. The
// responses of many concurrent requests thus leave in one TLS record and
// one system call, where net/http's server flushes each alone. A handler
// that returns leaves its last chunk (with END_STREAM) to the writer and
// does not wait for it.
//
// Limits: the streams open at once (MaxConcurrentStreams, advertised; a
// stream beyond it is refused), the request head (MaxHeaderBytes: 431
// without calling the handler; a block more than twice over it ends the
// connection, as x/net's Framer decides), the windows granted to request
// bodies (StreamWindow, ConnWindow: received bytes wait in pooled 16 KiB
// chunks, so a handler that does not read pins at most its stream's
// window), and the control frames a client can make the server owe while
// not reading (1000; beyond, the connection is closed). Rapid reset is the
// caller's to guard against (package resetguard wraps the connection).
//
// A request that asks for 100 (Continue) gets it when the handler first
// reads its body (the Expect field is taken out, as net/http's server does).
//
// Shutdown sends GOAWAY with the last stream the server took; those finish
// and the connection closes after the last. IdleTimeout does the same for
// a connection without streams.
//
// What a handler writes is what goes out: no Date, no sniffed
// Content-Type, no Content-Length of its own. Connection-specific fields
// and fields that are not valid are left out, as net/http's server does;
// trailers are the keys declared in the Trailer field and those set with
// http.TrailerPrefix.
package h2server
