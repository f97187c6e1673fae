// Package selfsign makes the certificates of test and development setups
// that are not the mesh's own identity: a CA and the leaves it signs, or a
// self-signed server certificate (the local cluster's PKI, the benchmark's,
// the conformance echo server's), all ECDSA P-256, returned with their
// errors. internal/testpki builds on it for tests; the mesh's real
// identities come from identity/ca.
package selfsign
