// Command echo is a stand-in for the Gateway API conformance suite's mesh
// echo image (registry.k8s.io/gateway-api/echo-advanced, Istio's echo app):
// the same server flags, the same "client" command the suite runs in a pod
// through exec, and the same output the suite parses. It is built from this
// repository's sources, so the suite's mesh tests run on the local cluster
// without Docker and without Istio's module graph.
//
// Installed as /usr/local/bin/server and /usr/local/bin/client, it acts by
// the name it is called by; "echo server|client|gencert ..." works too.
//
// Output format (what the conformance suite's utils/echo parses):
//
// The server answers every HTTP request with 200 and a body of KEY=VALUE
// lines: ServiceVersion, ServicePort, Host, URL, Method, Proto, IP, one
// RequestHeader=Name:Value per header value (names sorted), Hostname (the
// pod's name). gRPC calls to /proto.EchoTestService/Echo get the same lines,
// plus StatusCode=200, as the response message.
//
// The client prints, for request i, "[i] Url=...", "[i] Header=Name:Value"
// per header sent, "[i] StatusCode=N", "[i] ResponseHeader=Name:Value" per
// response header (sorted), then "[i body] LINE" per body line, and a blank
// line between requests. It exits non-zero if any request failed to get an
// answer (a transport error), never for an HTTP status.
package main
