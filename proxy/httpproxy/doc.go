// Package httpproxy forwards HTTP requests, one at a time, to the upstream a
// connection is bound for: HTTP/1 requests over pooled keep-alive HTTP/1
// connections (package h1client; net/http's Transport only for what it
// hands over: upgrades, 100-continue), HTTP/2 requests over multiplexed h2c
// connections, and requests to meshed endpoints over HTTP/2 with mutual TLS
// (both with package h2client, whose requests refused unprocessed come back
// as connection failures, safe to send elsewhere). It streams
// bodies both ways (gRPC bidi included), keeps trailers, passes Upgrade
// (WebSocket) through, drops hop-by-hop headers as RFC 9110 says, and records
// each request's metrics.
//
// A destination with routes (GAMMA HTTPRoutes and GRPCRoutes, see
// endpoints.Route) sends each request where its first matching route says
// (dispatch.go): a redirect is answered here (redirect.go); otherwise the
// route's header and URL edits apply (filters.go), mirrors get a copy
// (mirror.go), a backend is chosen by weight, and the route's timeouts and
// retry take precedence over the Service's policy (a route's retry takes
// every method, as GEP-1731 has no method rule; see policyFor). A request
// no route takes gets 404 (gRPC: UNIMPLEMENTED).
package httpproxy
