package harness

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"path/filepath"
	"time"

	"github.com/meshctl/meshctl/internal/selfsign"
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
	caKey, err := selfsign.NewKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "bench-ca"},
		IsCA:    true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ca, err := selfsign.Sign(caTmpl, caTmpl, caKey.Public(), caKey, -time.Hour, 48*time.Hour)
	if err != nil {
		return nil, err
	}
	p := &pki{
		CA:           filepath.Join(dir, "ca.crt"),
		ClientSPIFFE: "spiffe://cluster.local/ns/bench/sa/client",
		ServerSPIFFE: "spiffe://cluster.local/ns/bench/sa/server",
		ServerDNS:    "server.bench.local",
	}
	if err := selfsign.WriteFile(p.CA, selfsign.CertPEM(ca), 0o644); err != nil {
		return nil, err
	}
	for _, leaf := range []struct {
		name, spiffe, dns string
		cert, key, bundle *string
	}{
		{"client", p.ClientSPIFFE, "client.bench.local", &p.ClientCert, &p.ClientKey, &p.ClientBundle},
		{"server", p.ServerSPIFFE, p.ServerDNS, &p.ServerCert, &p.ServerKey, &p.ServerBundle},
	} {
		key, err := selfsign.NewKey()
		if err != nil {
			return nil, err
		}
		u, _ := url.Parse(leaf.spiffe)
		cert, err := selfsign.Sign(&x509.Certificate{
			Subject: pkix.Name{CommonName: leaf.dns}, URIs: []*url.URL{u}, DNSNames: []string{leaf.dns},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, ca, key.Public(), caKey, -time.Hour, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		keyPEM, err := selfsign.KeyPEM(key)
		if err != nil {
			return nil, err
		}
		*leaf.cert = filepath.Join(dir, leaf.name+".crt")
		*leaf.key = filepath.Join(dir, leaf.name+".key")
		*leaf.bundle = filepath.Join(dir, leaf.name+".pem")
		certPEM := selfsign.CertPEM(cert)
		for path, data := range map[string][]byte{*leaf.cert: certPEM, *leaf.key: keyPEM, *leaf.bundle: append(append([]byte{}, certPEM...), keyPEM...)} {
			if err := selfsign.WriteFile(path, data, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}
