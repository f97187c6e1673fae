// Package identity holds meshctl's workload identity: SPIFFE IDs
// (internal/spiffeid), the certificate authority that issues them (controller side),
// and the proxy-side client. Only the small, dependency-free parts are meant
// to be linked into mesh-proxy.
package identity
