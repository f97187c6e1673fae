// Package meshtls is the mutual TLS between proxies: TLS 1.3 only, each side
// proving a SPIFFE ID with a certificate that chains to the current trust
// roots, and ALPN naming what the connection carries (multiplexed HTTP/2, or
// one opaque stream). Certificates and roots are read from a certs.Source on
// every handshake, so rotations take effect for new connections without
// touching live ones.
package meshtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// ALPN protocols of meshed connections (docs/DESIGN.md).
const (
	// ALPNHTTP2 carries HTTP requests, multiplexed HTTP/2.
	ALPNHTTP2 = "meshctl/h2"
	// ALPNOpaque carries one opaque byte stream (TCP, or an upgraded HTTP/1 connection).
	ALPNOpaque = "meshctl/opaque"
	// OrigProtoHeader marks requests that were HTTP/1 at the client, so the
	// server side's proxy sends them to the application as HTTP/1 again.
	OrigProtoHeader = "meshctl-orig-proto"
)

// IsMeshALPN reports whether an ALPN protocol is one of the mesh's.
func IsMeshALPN(p string) bool { return p == ALPNHTTP2 || p == ALPNOpaque }

// Error is a failed meshed handshake, with a short reason for metrics.
type Error struct {
	// Reason is one of: identity_mismatch, untrusted, expired, no_certificate,
	// alpn, handshake.
	Reason string
	Err    error
}

func (e *Error) Error() string { return "meshed TLS: " + e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Reason classifies any handshake error for metrics.
func Reason(err error) string {
	var me *Error
	if errors.As(err, &me) {
		return me.Reason
	}
	return "handshake"
}

// verifyPeer checks a peer's chain against the current roots.
func verifyPeer(src certs.Source, chain []*x509.Certificate) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, &Error{Reason: "no_certificate", Err: errors.New("the peer sent no certificate")}
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	id, err := certs.VerifyChain(raw, src.Bundle().Roots, time.Now())
	if err != nil {
		var invalid x509.CertificateInvalidError
		var unknown x509.UnknownAuthorityError
		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return id, &Error{Reason: "expired", Err: err}
		case errors.As(err, &unknown):
			return id, &Error{Reason: "untrusted", Err: err}
		}
		return id, &Error{Reason: "untrusted", Err: err}
	}
	return id, nil
}

// ClientConfig is the TLS configuration for dialing a peer that must prove
// want, offering one ALPN protocol. cache, shared across dials, enables
// session resumption.
func ClientConfig(src certs.Source, want spiffeid.ID, alpn string, cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Full-size records from the first byte: the HTTP/2 hop gathers frames
		// into 16 KiB writes, which small early records would split.
		DynamicRecordSizingDisabled: true,
		NextProtos:                  []string{alpn},
		// The chain is verified in VerifyConnection, against the roots of the
		// moment and by SPIFFE ID rather than by host name.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Bundle().Certificate, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := verifyPeer(src, cs.PeerCertificates)
			if err != nil {
				return err
			}
			if got != want {
				return &Error{Reason: "identity_mismatch", Err: fmt.Errorf("the server is %s, expected %s", got, want)}
			}
			if cs.NegotiatedProtocol != alpn {
				return &Error{Reason: "alpn", Err: fmt.Errorf("the server chose %q, not %q", cs.NegotiatedProtocol, alpn)}
			}
			return nil
		},
		ClientSessionCache: cache,
	}
}

// ServerConfig is the TLS configuration for accepting meshed connections:
// the client must present a certificate chaining to the current roots.
func ServerConfig(src certs.Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Full-size records from the first byte: the HTTP/2 hop gathers frames
		// into 16 KiB writes, which small early records would split.
		DynamicRecordSizingDisabled: true,
		NextProtos:                  []string{ALPNHTTP2, ALPNOpaque},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Bundle().Certificate, nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := verifyPeer(src, cs.PeerCertificates); err != nil {
				return err
			}
			if !IsMeshALPN(cs.NegotiatedProtocol) {
				return &Error{Reason: "alpn", Err: fmt.Errorf("the client offered no mesh protocol")}
			}
			return nil
		},
	}
}

// PeerID returns the SPIFFE ID of a verified connection's peer.
func PeerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("no peer certificate")
	}
	return spiffeid.FromCertificate(cs.PeerCertificates[0])
}
