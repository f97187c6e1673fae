// Package admin serves the proxy's admin port (4191): /live, /ready and
// /metrics (Prometheus text) to anyone, and the sensitive endpoints — /tap
// (a live JSON-lines stream of every request's metadata), /identity (the
// workload certificate), /destinations (what discovery follows), POST /renew
// and /debug/pprof/ — only to
//
//   - loopback clients, in plaintext (a shell in the pod, a local harness), and
//   - the control plane over mutual TLS: a client certificate that chains to
//     the mesh's trust roots and carries exactly the controller's SPIFFE ID.
//
// The port stays one port: a connection whose first byte starts a TLS
// handshake is served over TLS with the proxy's own workload certificate,
// any other in plaintext. No source address other than loopback is trusted:
// the node, hostNetwork pods and NodePort traffic SNATed to the node look
// alike. Users reach the sensitive endpoints through the controller's
// aggregated API (admin.meshctl.io), which checks their RBAC and relays.
package admin
