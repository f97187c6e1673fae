// Package proxy is mesh-proxy, the sidecar: it accepts the connections the
// pod's redirect rules send to it (outbound on 4140, inbound on 4143) or, in
// explicit mode, connections to a configured listen address; finds each
// connection's destination; detects its protocol; and proxies HTTP/1 and
// HTTP/2 request by request, or opaque TCP byte for byte, while recording
// metrics served on the admin port (4191).
//
// The pieces live in subpackages by concern:
//
//   - redirect: the nftables rules of `mesh-proxy init`; origdst: the
//     address a redirected connection was sent to (SO_ORIGINAL_DST);
//   - detect: the protocol a client speaks, from its first bytes;
//   - discovery: the proxy's side of the destination and inbound-policy
//     streams; endpoints: where a connection's requests go (a destination's
//     endpoints, its routes and their matches);
//   - balance: the endpoint per request (latency-aware, failure accrual);
//     retry: whether a failed request may go again, within a budget;
//     servicepolicy: the retries and timeouts a Service's annotations ask;
//   - h1: the strict HTTP/1 codec (heads parsed in place); h1server: the
//     HTTP/1 server of plaintext application connections on it (an idle
//     connection holds no buffer), which hands upgrades, CONNECT and
//     100-continue to net/http's server;
//   - h2: what the proxy's HTTP/2 client (h2client) and server (h2server)
//     share, on x/net's Framer and hpack: writes that batch the frames of
//     many streams. They carry the meshed hop and h2c from and to
//     applications;
//   - httpproxy: HTTP forwarding, routes' filters, redirects and mirrors;
//     tcpproxy: opaque forwarding; resetguard: HTTP/2 rapid-reset defence;
//   - meshtls: the mutual TLS between proxies; authz: who may reach an
//     inbound port;
//   - metrics, tap and admin: what the proxy reports, and the admin port
//     that serves it.
//
// This package wires them into listeners with a graceful drain; podstart
// starts a proxy in a pod (its identity, discovery, the pod's inbound
// policy) or from certificate files.
package proxy
