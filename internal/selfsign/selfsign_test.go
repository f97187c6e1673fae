package selfsign

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"
)

// TestACAAndALeafVerify makes a CA and a leaf it signs and verifies the
// chain, the validity and the keys' encodings.
func TestACAAndALeafVerify(t *testing.T) {
	caKey, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	ca, err := Sign(caTmpl, caTmpl, caKey.Public(), caKey, -time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := Sign(&x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, DNSNames: []string{"leaf.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, key.Public(), caKey, -time.Minute, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Error("the CA and the leaf share a serial number")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "leaf.example"}); err != nil {
		t.Errorf("the leaf does not verify against its CA: %v", err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 2*time.Hour || d > 2*time.Hour+2*time.Minute {
		t.Errorf("the leaf is valid for %v, want 2h1m", d)
	}
	if b, _ := pem.Decode(CertPEM(leaf)); b == nil || b.Type != "CERTIFICATE" {
		t.Error("CertPEM is no certificate")
	}
	for name, f := range map[string]func() ([]byte, error){"PRIVATE KEY": func() ([]byte, error) { return KeyPEM(key) }, "EC PRIVATE KEY": func() ([]byte, error) { return ECKeyPEM(key) }} {
		data, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(data); b == nil || b.Type != name {
			t.Errorf("%s: encoded as %v", name, b)
		}
	}
}
