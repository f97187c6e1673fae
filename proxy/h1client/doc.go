// Package h1client is mesh-proxy's HTTP/1.1 client to the upstreams it
// reaches in plaintext: an inbound request's application, and an outbound
// request's destination outside the mesh.
//
// It replaces net/http's Transport on that path. A kept-alive connection
// waiting in its pool holds no goroutine and no buffer (net/http's holds two
// goroutines and 8 KiB of buffers): its read buffer is taken from a pool
// only while a response is read, its write buffer only while a request is
// written, and a request with a body is the only one that starts a
// goroutine (its body is written while the response is read, so an early
// answer comes back at once). A pooled connection the upstream closed
// while it waited is noticed before it is used (a non-blocking peek at the
// socket), and a request that meets one anyway is sent again on another
// connection when nothing of it can have been processed (nothing written,
// or an idempotent request without a body that got no byte of answer), as
// net/http does.
//
// Response heads are read with the strict parser of package h1 (bare LF,
// obs-fold, Content-Length with Transfer-Encoding and the rest are refused:
// the proxy answers 502); bodies are streamed (Content-Length, chunked with
// trailers, or until the connection closes); 1xx responses before the
// final one are skipped; HEAD, 204 and 304 answers have no body whatever
// their fields say. A request's context cancels it at any point, the body's
// reading included.
//
// A body of unknown length is sent chunked, whatever the method: net/http
// first waits up to 200 ms for a byte of a GET's, HEAD's or DELETE's body
// and sends none when it is empty, which this client does not (such a
// request reaches it only from an HTTP/2 client whose HEADERS did not end
// the stream).
//
// What it does not do it hands to Config.Fallback (net/http): upgrades
// (WebSocket), requests that expect 100-continue, and CONNECT.
package h1client
