// Package ca is meshctl's certificate authority: it makes trust anchors and
// issuers, checks chains users bring, and signs workload certificates for
// SPIFFE IDs. It is built on smallstep's libraries: x509util templates,
// keyutil and pemutil from go.step.sm/crypto, and the CA-service interface of
// github.com/smallstep/certificates (cas/apiv1, signed by cas/softcas with the
// issuer's key), so that an external CA can take softcas's place later.
//
// Only the controller and the CLI link this package; mesh-proxy must not.
package ca
