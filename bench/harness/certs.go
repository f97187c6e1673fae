package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// pki holds the files every setup's TLS uses: one CA, a client and a server
// certificate (ECDSA P-256, TLS 1.3 for everyone). The server certificate
// carries both a SPIFFE ID (meshctl checks it) and a DNS name (nginx and
// HAProxy check that).
type pki struct {
	CA                         string
	ClientCert, ClientKey      string
	ServerCert, ServerKey      string
	ClientBundle, ServerBundle string // cert and key in one file (HAProxy)
	ClientSPIFFE, ServerSPIFFE string
	ServerDNS                  string
}

func writePKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{
		CA:           filepath.Join(dir, "ca.crt"),
		ClientSPIFFE: "spiffe://cluster.local/ns/bench/sa/client",
		ServerSPIFFE: "spiffe://cluster.local/ns/bench/sa/server",
		ServerDNS:    "server.bench.local",
	}
	if err := os.WriteFile(p.CA, pemBlock("CERTIFICATE", caDER), 0o644); err != nil {
		return nil, err
	}
	for i, leaf := range []struct {
		name, spiffe, dns string
		cert, key, bundle *string
	}{
		{"client", p.ClientSPIFFE, "client.bench.local", &p.ClientCert, &p.ClientKey, &p.ClientBundle},
		{"server", p.ServerSPIFFE, p.ServerDNS, &p.ServerCert, &p.ServerKey, &p.ServerBundle},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		u, _ := url.Parse(leaf.spiffe)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(10 + i)), Subject: pkix.Name{CommonName: leaf.dns},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			URIs: []*url.URL{u}, DNSNames: []string{leaf.dns},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		*leaf.cert = filepath.Join(dir, leaf.name+".crt")
		*leaf.key = filepath.Join(dir, leaf.name+".key")
		*leaf.bundle = filepath.Join(dir, leaf.name+".pem")
		certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)
		for path, data := range map[string][]byte{*leaf.cert: certPEM, *leaf.key: keyPEM, *leaf.bundle: append(append([]byte{}, certPEM...), keyPEM...)} {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return nil, fmt.Errorf("write %s: %w", path, err)
			}
		}
	}
	return p, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
