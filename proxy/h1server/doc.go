// Package h1server serves HTTP/1.1 connections to an http.Handler on
// mesh-proxy's own codec (proxy/h1) instead of net/http's server: heads are
// parsed in place in a pooled buffer, and a connection waiting for its next
// request holds no buffer at all, only its goroutine (on a socket it waits
// for readability through the runtime's poller and takes a buffer from the
// pool when bytes arrive, in the same system call that reads them).
//
// It serves plain requests: GET and its kin, and bodies framed by
// Content-Length or chunked, answered with a Content-Length, chunked (with
// trailers) or, for HTTP/1.0, close-delimited response. What it does not
// serve itself it hands off, with the bytes it has read of it, to whoever
// the Server's HandOff names (the proxy's net/http server): a protocol
// upgrade, CONNECT, a request that expects 100 Continue, and a head larger
// than its buffer. A head proxy/h1 refuses (the request-smuggling forms
// among them) is answered with its status and the connection closed.
//
// Like net/http, it watches the connection while a handler runs, once the
// request's body has been read, and cancels the request's context when the
// client goes away.
package h1server
