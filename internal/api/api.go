// Package api holds the wire types of the control API between proxies and
// mesh-controller (HTTP/2 over TLS, JSON bodies, versioned /v1/ paths), so
// both sides agree on them in one place.
package api

// Paths of the control API.
const (
	// CertificatePath issues a workload certificate (POST CertificateRequest,
	// answered with CertificateResponse). It is the only path that does not
	// require a client certificate.
	CertificatePath = "/v1/certificate"
)

// TokenAudience is the audience of the projected ServiceAccount token a
// proxy proves its identity with.
const TokenAudience = "identity.meshctl.io"

// MaxCSRBytes bounds a certificate request.
const MaxCSRBytes = 16 << 10

// CertificateRequest asks for a workload certificate.
type CertificateRequest struct {
	// CSR is a PEM certificate signing request for the workload's SPIFFE ID.
	CSR string `json:"csr"`
	// Token is the workload's projected ServiceAccount token (audience TokenAudience).
	Token string `json:"token"`
}

// CertificateResponse carries the certificate issued.
type CertificateResponse struct {
	// Certificate is PEM: the leaf, then the issuer.
	Certificate string `json:"certificate"`
	// TrustRoots is PEM: every trust anchor peers may chain to.
	TrustRoots string `json:"trust_roots"`
}

// Error is the JSON body of every error answer.
type Error struct {
	Error string `json:"error"`
	// Reason is a short machine-readable cause (e.g. "wrong_id", "token_invalid").
	Reason string `json:"reason,omitempty"`
}
