// Package httpproxy forwards HTTP requests, one at a time, to the upstream a
// connection is bound for: HTTP/1 requests over pooled keep-alive HTTP/1
// connections, HTTP/2 requests over multiplexed h2c connections. It streams
// bodies both ways (gRPC bidi included), keeps trailers, passes Upgrade
// (WebSocket) through, drops hop-by-hop headers as RFC 9110 says, and records
// each request's metrics.
package httpproxy
