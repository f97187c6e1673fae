// Package proxy is mesh-proxy, the sidecar: it accepts the connections the
// pod's redirect rules send to it (outbound on 4140, inbound on 4143) or, in
// explicit mode, connections to a configured listen address; finds each
// connection's destination; detects its protocol; and proxies HTTP/1 and
// HTTP/2 request by request, or opaque TCP byte for byte, while recording
// metrics served on the admin port (4191).
//
// The pieces live in subpackages by concern: detect (protocol detection),
// origdst (SO_ORIGINAL_DST), redirect (the nftables rules of `mesh-proxy
// init`), httpproxy (HTTP forwarding), tcpproxy (opaque forwarding), metrics
// and admin. This package wires them into listeners with a graceful drain.
package proxy
