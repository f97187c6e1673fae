// Package webhookcert makes the proxy injector's serving certificate: a small
// CA (its root goes in the MutatingWebhookConfiguration's caBundle) and a
// certificate for the controller's Service, stored in the Secret
// meshctl/mesh-webhook-tls. `meshctl install` makes them; controller replicas
// only read the Secret (and follow its changes).
package webhookcert

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/minica"
	"go.step.sm/crypto/pemutil"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// Bundle is what the webhook and its configuration need.
type Bundle struct {
	// CABundle is the PEM root for the webhook configuration's caBundle.
	CABundle []byte
	// CertPEM is the serving certificate followed by its intermediate.
	CertPEM []byte
	// KeyPEM is the serving certificate's private key.
	KeyPEM []byte
}

// DNSNames are the names the API server may use to reach a Service.
func DNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc." + meshnames.ClusterDomain,
	}
}

// Generate makes a CA and a serving certificate for service.namespace.svc
// valid for lifetime.
func Generate(service, namespace string, lifetime time.Duration) (*Bundle, error) {
	ca, err := minica.New(minica.WithName("meshctl webhook"))
	if err != nil {
		return nil, fmt.Errorf("webhook CA: %w", err)
	}
	signer, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, fmt.Errorf("webhook key: %w", err)
	}
	names := DNSNames(service, namespace)
	cert, err := ca.Sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    names,
		NotBefore:   time.Now().Add(-5 * time.Minute),
		NotAfter:    time.Now().Add(lifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		PublicKey:   signer.Public(),
	})
	if err != nil {
		return nil, fmt.Errorf("sign the webhook certificate: %w", err)
	}
	keyBlock, err := pemutil.Serialize(signer, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, err
	}
	certPEM := append(pemCert(cert), pemCert(ca.Intermediate)...)
	return &Bundle{CABundle: pemCert(ca.Root), CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(keyBlock)}, nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
