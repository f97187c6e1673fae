package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"time"

	"github.com/meshctl/meshctl/internal/selfsign"
)

// genCert writes a self-signed certificate (for the names the echo
// Services answer to) and its key, for the server's --crt and --key.
func genCert(crtPath, keyPath string) error {
	key, err := selfsign.NewKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "echo"},
		DNSNames:    []string{"echo", "echo-v1", "echo-v2", "*.gateway-conformance-mesh.svc.cluster.local"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, err := selfsign.Sign(tmpl, tmpl, key.Public(), key, -time.Hour, 10*365*24*time.Hour)
	if err != nil {
		return err
	}
	keyPEM, err := selfsign.KeyPEM(key)
	if err != nil {
		return err
	}
	if err := selfsign.WriteFile(crtPath, selfsign.CertPEM(cert), 0o644); err != nil {
		return err
	}
	// The image's user must read it: the key of a test certificate is no
	// secret.
	return selfsign.WriteFile(keyPath, keyPEM, 0o644)
}
