// Package testpki makes certificate authorities and SPIFFE workload
// certificates for tests: real keys, real chains, written as PEM files when
// asked.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/selfsign"
)

// CA is a root (and optionally an intermediate issuer under it).
type CA struct {
	Cert   *x509.Certificate
	Key    crypto.Signer
	parent *CA
}

// NewRoot makes a self-signed root CA.
func NewRoot(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	return &CA{Cert: sign(t, tmpl, tmpl, key.Public(), key, -time.Hour, 24*time.Hour), Key: key}
}

// NewIssuer makes an intermediate CA signed by ca.
func (ca *CA) NewIssuer(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	return &CA{Cert: sign(t, tmpl, ca.Cert, key.Public(), ca.Key, -time.Hour, 24*time.Hour), Key: key, parent: ca}
}

// Leaf is a workload certificate and its key.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // the issuers above the leaf, up to (not including) the root
}

// Issue makes a leaf for a SPIFFE ID valid from now+from to now+until.
func (ca *CA) Issue(t testing.TB, spiffeID string, from, until time.Duration) *Leaf {
	t.Helper()
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: u.Path}, URIs: []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leaf := &Leaf{Cert: sign(t, tmpl, ca.Cert, key.Public(), ca.Key, from, until), Key: key}
	for c := ca; c.parent != nil; c = c.parent {
		leaf.Chain = append(leaf.Chain, c.Cert)
	}
	return leaf
}

// IssueClient makes a client certificate that names its holder by common
// name, as Kubernetes' x509 authenticators read it (the API server's front
// proxy, for one), valid for an hour.
func (ca *CA) IssueClient(t testing.TB, commonName string) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leaf := &Leaf{Cert: sign(t, tmpl, ca.Cert, key.Public(), ca.Key, -time.Minute, time.Hour), Key: key}
	for c := ca; c.parent != nil; c = c.parent {
		leaf.Chain = append(leaf.Chain, c.Cert)
	}
	return leaf
}

// TLSCertificate is the leaf, its chain and key, as crypto/tls serves them.
func (l *Leaf) TLSCertificate() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, ch := range l.Chain {
		c.Certificate = append(c.Certificate, ch.Raw)
	}
	return c
}

// Files are PEM files of a leaf (with its chain), its key and trust roots.
type Files struct{ Cert, Key, Roots string }

// Write writes the leaf, its key and the given roots as PEM files in dir.
func (l *Leaf) Write(t testing.TB, dir string, roots ...*CA) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Roots: filepath.Join(dir, "roots.pem")}
	WriteAtomic(t, f.Cert, l.CertPEM())
	WriteAtomic(t, f.Key, l.KeyPEM(t))
	var rootsPEM []byte
	for _, r := range roots {
		rootsPEM = append(rootsPEM, CertPEM(r.Cert)...)
	}
	WriteAtomic(t, f.Roots, rootsPEM)
	return f
}

// CertPEM is the leaf followed by its chain.
func (l *Leaf) CertPEM() []byte {
	out := CertPEM(l.Cert)
	for _, c := range l.Chain {
		out = append(out, CertPEM(c)...)
	}
	return out
}

// KeyPEM is the leaf's private key.
func (l *Leaf) KeyPEM(t testing.TB) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM encodes one certificate.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// WriteAtomic replaces a file in one rename, as the kubelet's volume updates do.
func WriteAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := selfsign.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer, from, until time.Duration) *x509.Certificate {
	t.Helper()
	c, err := selfsign.Sign(tmpl, parent, pub, signer, from, until)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
