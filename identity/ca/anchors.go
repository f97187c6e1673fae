package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"
)

// Default lifetimes. A trust anchor outlives many issuers; an issuer outlives
// many 24-hour workload certificates; rotating either is a routine operation.
const (
	DefaultAnchorLifetime = 10 * 365 * 24 * time.Hour
	DefaultIssuerLifetime = 365 * 24 * time.Hour
	// DefaultLeafLifetime is a workload certificate's lifetime.
	DefaultLeafLifetime = 24 * time.Hour
)

// KeyPair is a CA certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CertPEM encodes the certificate.
func (k *KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})
}

// KeyPEM encodes the private key (PKCS #8).
func (k *KeyPair) KeyPEM() ([]byte, error) {
	block, err := pemutil.Serialize(k.Key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// caTemplate is the x509util template of meshctl's CA certificates: a CA
// that may sign only for its trust domain's SPIFFE IDs (a name constraint on
// URIs), with a bounded chain below it.
const caTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"keyUsage": ["certSign", "crlSign", "digitalSignature"],
	"basicConstraints": {"isCA": true, "maxPathLen": {{ .Insecure.User.maxPathLen }}},
	"nameConstraints": {"critical": true, "permittedURIDomains": [{{ toJson .Insecure.User.trustDomain }}]}
}`

// NewTrustAnchor makes a self-signed root for a trust domain. It may sign one
// level of issuers.
func NewTrustAnchor(trustDomain string, lifetime time.Duration) (*KeyPair, error) {
	return newCA(trustDomain, "meshctl trust anchor ("+trustDomain+")", 1, lifetime, nil)
}

// NewIssuer makes an intermediate CA signed by the anchor. It may sign only
// workload certificates.
func NewIssuer(anchor *KeyPair, trustDomain string, lifetime time.Duration) (*KeyPair, error) {
	if anchor.Cert.NotAfter.Before(time.Now().Add(lifetime)) {
		lifetime = time.Until(anchor.Cert.NotAfter) // never outlive the anchor
	}
	if lifetime <= 0 {
		return nil, errors.New("the trust anchor has expired")
	}
	return newCA(trustDomain, "meshctl issuer ("+trustDomain+")", 0, lifetime, anchor)
}

func newCA(trustDomain, cn string, maxPathLen int, lifetime time.Duration, parent *KeyPair) (*KeyPair, error) {
	signer, err := keyutil.GenerateDefaultSigner() // ECDSA P-256
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	data := x509util.NewTemplateData()
	data.SetCommonName(cn)
	data.SetUserData(map[string]any{"trustDomain": trustDomain, "maxPathLen": maxPathLen})
	cert, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: signer.Public()}, x509util.WithTemplate(caTemplate, data))
	if err != nil {
		return nil, fmt.Errorf("CA template: %w", err)
	}
	tmpl := cert.GetCertificate()
	tmpl.NotBefore = time.Now().Add(-5 * time.Minute)
	tmpl.NotAfter = time.Now().Add(lifetime)
	tmpl.MaxPathLenZero = maxPathLen == 0
	parentCert, parentKey := tmpl, signer
	if parent != nil {
		parentCert, parentKey = parent.Cert, parent.Key
	}
	signed, err := x509util.CreateCertificate(tmpl, parentCert, signer.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	return &KeyPair{Cert: signed, Key: signer}, nil
}

// ParseKeyPair reads a CA certificate and its key from PEM.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cert, err := pemutil.ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	key, err := pemutil.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return &KeyPair{Cert: cert, Key: signer}, nil
}
