// Package h2client is mesh-proxy's HTTP/2 client: for the meshed hop (the
// requests one proxy sends another over mutual TLS, ALPN meshctl/h2) and
// for h2c to applications and unmeshed endpoints. It is
// built on golang.org/x/net/http2's Framer and hpack, in place of net/http's
// Transport, for one reason: batching.
//
// Each connection has one reader goroutine and one writer goroutine, and no
// goroutine per request (a request with a body has one, which copies the
// body). Callers never touch the socket: a request queues its head (and its
// body's chunks) under the connection's lock and wakes the writer, which
// encodes every frame queued by then (control frames first, then heads,
// then one DATA frame per stream in turn, until nothing is left) into one
// 16 KiB buffer, and writes it when it fills and once at the end. Frames of
// many concurrent requests thus leave in one TLS record and one system
// call, where net/http's client flushes each request's HEADERS alone.
// Before it flushes, the writer yields once, so that the requests the same
// network poll made runnable (the other connections' requests into the
// proxy) queue theirs first.
//
// Flow control: the client grants each stream Config.StreamWindow and the
// connection Config.ConnWindow, so a response its reader does not read
// pins at most that much memory; received bytes sit in pooled 16 KiB chunks
// that go back to the pool as soon as they are read, and a WINDOW_UPDATE
// goes out when a quarter of a window was consumed. A response body that
// is closed early resets its stream and gives its unread bytes back to the
// connection's window at once.
//
// Connections are pooled by address and by a caller-given key (the peer's
// identity): a request takes one with a free stream slot under the peer's
// MAX_CONCURRENT_STREAMS, or dials another. A connection the peer sends
// GOAWAY takes no new requests and closes when its last stream ends;
// requests it did not process (above GOAWAY's last stream, refused with
// REFUSED_STREAM, or never written) are sent again on another connection
// when they have no body, and otherwise fail with an error that wraps
// ErrUnprocessed, so the caller may send them elsewhere. A connection idle
// for Config.IdleConnTimeout is closed; one that reads nothing for
// Config.SendPingTimeout is pinged and closed if no answer comes within
// Config.PingTimeout.
//
// What it sends is what the request says: no User-Agent, no
// Accept-Encoding of its own; connection-specific fields (Connection,
// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, and TE other
// than "trailers") are left out, Cookie is split into crumbs (RFC 9113
// §8.2.3), and Content-Length follows net/http's rule. A field that is not
// valid fails the request before anything is sent.
package h2client
