package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

var web = spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}

func newTestCA(t *testing.T) (*KeyPair, *KeyPair, *CA) {
	t.Helper()
	anchor, err := NewTrustAnchor("cluster.local", time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := NewIssuer(anchor, "cluster.local", time.Hour*24*30)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(issuer)
	if err != nil {
		t.Fatal(err)
	}
	return anchor, issuer, c
}

func csrFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssuedCertificateCarriesOnlyTheSPIFFEIDAndChainsToTheAnchor(t *testing.T) {
	anchor, issuer, c := newTestCA(t)
	if err := ValidateIssuer(issuer, []*x509.Certificate{anchor.Cert}, time.Hour); err != nil {
		t.Fatalf("a fresh issuer does not validate: %v", err)
	}
	chain, err := c.Sign(csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web, DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != web.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf names: URIs %v DNS %v IP %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.IsCA || time.Until(leaf.NotAfter) > DefaultLeafLifetime || leaf.NotBefore.After(time.Now()) {
		t.Errorf("leaf CA=%v lifetime %v..%v", leaf.IsCA, leaf.NotBefore, leaf.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not chain to the anchor: %v", err)
	}
}

// TestNameConstraintsConfineTheIssuerToItsTrustDomain: even a certificate
// signed with the issuer's key for another trust domain does not verify.
func TestNameConstraintsConfineTheIssuerToItsTrustDomain(t *testing.T) {
	anchor, issuer, _ := newTestCA(t)
	u, _ := url.Parse("spiffe://evil.example/ns/a/sa/b")
	key := p256(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big1(), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(anchor.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(issuer.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("a certificate for another trust domain verified")
	}
}

func TestLeafLifetimeIsClampedToTheIssuer(t *testing.T) {
	anchor, err := NewTrustAnchor("cluster.local", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := NewIssuer(anchor, "cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(issuer)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.Sign(csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].NotAfter.After(issuer.Cert.NotAfter) {
		t.Errorf("leaf expires %v, after its issuer %v", chain[0].NotAfter, issuer.Cert.NotAfter)
	}
}

func big1() *big.Int { return big.NewInt(42) }

func TestCheckCSRRefuses(t *testing.T) {
	_, _, c := newTestCA(t)
	other := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "admin"}
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tampered := csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}})
	tampered.PublicKey = p256(t).Public() // the signature no longer matches the key it carries
	for _, tc := range []struct {
		name   string
		csr    *x509.CertificateRequest
		reason string
	}{
		{"another ServiceAccount's ID", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{other.URL()}}), "wrong_id"},
		{"two IDs", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL(), other.URL()}}), "wrong_id"},
		{"no ID", csrFor(t, p256(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}}), "wrong_id"},
		{"extra DNS name", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, DNSNames: []string{"web.shop.svc"}}), "extra_san"},
		{"extra IP", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), "extra_san"},
		{"CA flag", csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()},
			ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: bc}}}), "ca_requested"},
		{"weak RSA key", csrFor(t, weak, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), "weak_key"},
		{"signed by another key", tampered, "bad_signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Sign(tc.csr, web, time.Hour)
			var ce *CSRError
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Errorf("Sign = %v, want refusal %q", err, tc.reason)
			}
		})
	}
}

// hugeRSA is a 16384-bit RSA public key: no key needs to be generated (that
// takes minutes) to see it refused.
func hugeRSA(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func TestCheckKeyCapsRSAKeySize(t *testing.T) {
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  any
		ok   bool
	}{
		{"P-256", p256(t).Public(), true}, {"P-384", p384.Public(), true}, {"Ed25519", ed, true},
		{"P-224", p224.Public(), false},
		{"RSA 2048", hugeRSA(2048), true}, {"RSA 4096", hugeRSA(4096), true},
		{"RSA 1024", hugeRSA(1024), false}, {"RSA 4097", hugeRSA(4097), false},
		{"RSA 8192", hugeRSA(8192), false}, {"RSA 16384", hugeRSA(16384), false},
	} {
		err := CheckKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("%s: CheckKey = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// In a request, the key is judged before its signature is checked
	// (verifying with a huge key is the cost to avoid).
	csr := csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}})
	csr.PublicKey, csr.PublicKeyAlgorithm = hugeRSA(16384), x509.RSA
	var ce *CSRError
	if err := CheckCSR(csr, web); !errors.As(err, &ce) || ce.Reason != "weak_key" {
		t.Errorf("CheckCSR with a 16384-bit RSA key = %v, want refusal weak_key", err)
	}
}

func TestValidateIssuerRefusesBadChains(t *testing.T) {
	anchor, issuer, _ := newTestCA(t)
	otherAnchor, err := NewTrustAnchor("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors := []*x509.Certificate{anchor.Cert}
	for _, tc := range []struct {
		name    string
		kp      *KeyPair
		anchors []*x509.Certificate
		min     time.Duration
	}{
		{"key does not match", &KeyPair{Cert: issuer.Cert, Key: p256(t)}, anchors, 0},
		{"chains to another anchor", issuer, []*x509.Certificate{otherAnchor.Cert}, 0},
		{"no anchors", issuer, nil, 0},
		{"expires too soon", issuer, anchors, 365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateIssuer(tc.kp, tc.anchors, tc.min); err == nil {
				t.Error("ValidateIssuer = nil")
			}
		})
	}
	// A leaf is not an issuer.
	c, _ := New(issuer)
	chain, err := c.Sign(csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateIssuer(&KeyPair{Cert: chain[0], Key: p256(t)}, anchors, 0); err == nil {
		t.Error("a leaf validated as an issuer")
	}
}

func TestIssuerRotationSignsWithTheNewIssuer(t *testing.T) {
	anchor, _, c := newTestCA(t)
	next, err := NewIssuer(anchor, "cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetIssuer(next); err != nil {
		t.Fatal(err)
	}
	chain, err := c.Sign(csrFor(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}), web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := chain[0].CheckSignatureFrom(next.Cert); err != nil {
		t.Errorf("not signed by the new issuer: %v", err)
	}
}

func TestKeyPairPEMRoundTrips(t *testing.T) {
	anchor, _, _ := newTestCA(t)
	keyPEM, err := anchor.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyPair(anchor.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(anchor.Cert) {
		t.Error("certificate changed")
	}
}
