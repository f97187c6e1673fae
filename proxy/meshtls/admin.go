package meshtls

import (
	"crypto/tls"

	"github.com/meshctl/meshctl/internal/certs"
)

// ALPNAdmin is what mutual TLS on a proxy's admin port carries: plain
// HTTP/1.1 requests, one at a time (the control plane relays a few).
const ALPNAdmin = "http/1.1"

// AdminServerConfig is the TLS configuration of a proxy's admin port: TLS
// 1.3, the proxy's own certificate, and a client certificate that chains to
// the current trust roots required. Which verified peer may use which
// endpoint is the admin server's decision (PeerID); the control plane dials
// with ClientConfig(src, proxyID, ALPNAdmin, nil).
func AdminServerConfig(src certs.Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{ALPNAdmin},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Bundle().Certificate, nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(src, cs.PeerCertificates)
			return err
		},
	}
}
