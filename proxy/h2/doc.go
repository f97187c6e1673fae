// Package h2 holds what mesh-proxy's HTTP/2 client (h2client) and server
// (h2server) for the meshed hop share, on top of golang.org/x/net/http2's
// Framer and hpack: the writer's buffer that turns many frames into one
// 16 KiB write (OutBuf), the pooled chunks received data waits in until it
// is read (RecvBuf), and the field-name forms looked up rather than
// computed per request (Lower, Canonical).
package h2
