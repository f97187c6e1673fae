// Package certs holds a workload's certificate material as one consistent
// Bundle (leaf, key, chain, trust roots) and the Source interface the proxy
// reads it through. Files is a Source backed by PEM files that may change
// while the proxy runs (Kubernetes Secret and ConfigMap volumes swap them);
// the identity client is another.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Bundle is a workload's identity at one moment. It is never modified:
// a change is a new Bundle.
type Bundle struct {
	// Certificate is the leaf with its chain and private key; Leaf is set.
	Certificate *tls.Certificate
	// ID is the SPIFFE ID the leaf carries.
	ID spiffeid.ID
	// Roots are the trust anchors peers must chain to.
	Roots *x509.CertPool
	// RootCerts are the same anchors, for display.
	RootCerts []*x509.Certificate
}

// Source gives the current bundle. Implementations swap bundles atomically;
// callers read it for every handshake, so a rotation takes effect for new
// connections without touching live ones.
type Source interface {
	Bundle() *Bundle
}

// Leaf returns the leaf certificate.
func (b *Bundle) Leaf() *x509.Certificate { return b.Certificate.Leaf }

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// NewBundle builds a bundle from PEM: the leaf certificate (optionally
// followed by its chain), its private key and the trust roots. It checks that
// the key matches, that the leaf carries one SPIFFE ID, and that there is at
// least one root. It does not insist that the leaf chains to the roots
// (during a rotation, files change one at a time); Verify says whether it does.
func NewBundle(certPEM, keyPEM, rootsPEM []byte) (*Bundle, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	id, err := spiffeid.FromCertificate(pair.Leaf)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	roots, rootCerts, err := ParseRoots(rootsPEM)
	if err != nil {
		return nil, err
	}
	return &Bundle{Certificate: &pair, ID: id, Roots: roots, RootCerts: rootCerts}, nil
}

// ParseRoots reads one or more PEM certificates as a trust bundle.
func ParseRoots(rootsPEM []byte) (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for rest := rootsPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("trust roots: %w", err)
		}
		pool.AddCert(c)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("trust roots: no certificate found")
	}
	return pool, certs, nil
}

// Verify checks that the leaf chains to the bundle's roots now.
func (b *Bundle) Verify() error {
	_, err := VerifyChain(b.Certificate.Certificate, b.Roots, time.Now())
	return err
}

// VerifyChain verifies a peer's certificate chain (DER, leaf first) against
// roots for mesh use (either client or server) and returns the SPIFFE ID of
// the leaf.
func VerifyChain(chain [][]byte, roots *x509.CertPool, now time.Time) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, errors.New("no certificate")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("parse certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromCertificate(certs[0])
}

// Issuer returns the certificate that signed the leaf: the next one in the
// chain, or the root that did, or nil when neither is known.
func (b *Bundle) Issuer() *x509.Certificate {
	leaf := b.Leaf()
	if len(b.Certificate.Certificate) > 1 {
		if c, err := x509.ParseCertificate(b.Certificate.Certificate[1]); err == nil {
			return c
		}
	}
	for _, r := range b.RootCerts {
		if leaf.CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}
