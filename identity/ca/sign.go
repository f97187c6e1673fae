package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"
	"go.step.sm/crypto/x509util"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

// CSRError is a certificate request the CA refuses; Reason is short, for metrics.
type CSRError struct {
	Reason string
	Err    error
}

func (e *CSRError) Error() string {
	return "certificate request refused (" + e.Reason + "): " + e.Err.Error()
}
func (e *CSRError) Unwrap() error { return e.Err }

func refuse(reason, format string, args ...any) error {
	return &CSRError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// leafTemplate is the x509util template of workload certificates: the SPIFFE
// ID as the only SAN, for client and server authentication.
const leafTemplate = `{
	"subject": {},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["serverAuth", "clientAuth"]
}`

// signer is one issuer in use: the certificate service signing with its key.
type signer struct {
	issuer *KeyPair
	cas    apiv1.CertificateAuthorityService
}

// CA signs workload certificates with the current issuer; the issuer can be
// replaced while it runs (rotation).
type CA struct {
	current atomic.Pointer[signer]
	// Backdate is subtracted from NotBefore for clock skew. Default: 1 minute.
	Backdate time.Duration
}

// New returns a CA signing with issuer.
func New(issuer *KeyPair) (*CA, error) {
	c := &CA{Backdate: time.Minute}
	if err := c.SetIssuer(issuer); err != nil {
		return nil, err
	}
	return c, nil
}

// SetIssuer makes issuer sign every certificate from now on.
func (c *CA) SetIssuer(issuer *KeyPair) error {
	cas, err := softcas.New(context.Background(), apiv1.Options{
		Type:             string(apiv1.SoftCAS),
		CertificateChain: []*x509.Certificate{issuer.Cert},
		Signer:           issuer.Key,
	})
	if err != nil {
		return fmt.Errorf("certificate service: %w", err)
	}
	c.current.Store(&signer{issuer: issuer, cas: cas})
	return nil
}

// Issuer returns the issuer in use.
func (c *CA) Issuer() *x509.Certificate { return c.current.Load().issuer.Cert }

// oidBasicConstraints is the extension a CSR would use to ask to be a CA.
var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// CheckCSR verifies that a request asks for exactly the given SPIFFE ID:
// a valid self-signature, one URI SAN equal to id and no other name, no CA
// or other constraint extensions, and an acceptable key.
func CheckCSR(csr *x509.CertificateRequest, id spiffeid.ID) error {
	// The key first: checking the signature with an oversized key is the
	// costly part.
	if err := CheckKey(csr.PublicKey); err != nil {
		return err
	}
	if err := csr.CheckSignature(); err != nil {
		return refuse("bad_signature", "the request's signature does not match its key: %w", err)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return refuse("extra_san", "the request asks for DNS, IP or email names; only the SPIFFE ID is allowed")
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		got := make([]string, len(csr.URIs))
		for i, u := range csr.URIs {
			got[i] = u.String()
		}
		return refuse("wrong_id", "the request asks for %v; this workload may have only %s", got, id)
	}
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oidBasicConstraints) {
			return refuse("ca_requested", "the request asks for CA basic constraints")
		}
	}
	return nil
}

// RSA key sizes CheckKey accepts: below the minimum is weak; above the
// maximum only costs the CA (verifying a 16384-bit key's signature is ~60
// times the work of a 2048-bit one) and buys nothing.
const (
	MinRSABits = 2048
	MaxRSABits = 4096
)

// CheckKey accepts the keys a workload certificate may carry: ECDSA P-256
// or P-384, Ed25519, and RSA of MinRSABits to MaxRSABits. It is cheap: call
// it before anything costly is done for a request.
func CheckKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return refuse("weak_key", "ECDSA keys must be P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return refuse("weak_key", "RSA keys must be %d to %d bits, not %d", MinRSABits, MaxRSABits, bits)
		}
	default:
		return refuse("weak_key", "unsupported key type %T", pub)
	}
	return nil
}

// Sign checks the request (CheckCSR) and issues a certificate for id, valid
// for lifetime but never beyond the issuer. It returns the leaf followed by
// the issuer.
func (c *CA) Sign(csr *x509.CertificateRequest, id spiffeid.ID, lifetime time.Duration) ([]*x509.Certificate, error) {
	if err := CheckCSR(csr, id); err != nil {
		return nil, err
	}
	s := c.current.Load()
	if remaining := time.Until(s.issuer.Cert.NotAfter); remaining < lifetime {
		lifetime = remaining
	}
	if lifetime <= 0 {
		return nil, errors.New("the issuer has expired")
	}
	data := x509util.NewTemplateData()
	data.SetSANs([]string{id.String()})
	cert, err := x509util.NewCertificate(csr, x509util.WithTemplate(leafTemplate, data))
	if err != nil {
		return nil, refuse("template", "%w", err)
	}
	resp, err := s.cas.CreateCertificate(&apiv1.CreateCertificateRequest{
		Template: cert.GetCertificate(), CSR: csr, Lifetime: lifetime, Backdate: c.Backdate,
	})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return append([]*x509.Certificate{resp.Certificate}, resp.CertificateChain...), nil
}
