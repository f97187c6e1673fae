package meshtls

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Dialer opens meshed connections to peers.
type Dialer struct {
	// Source is the local identity. Required.
	Source certs.Source
	// Net dials the TCP connection. Required.
	Net func(ctx context.Context, network, addr string) (net.Conn, error)
	// Sessions caches TLS sessions for resumption; nil disables resumption.
	Sessions tls.ClientSessionCache
}

// ErrNoIdentity means the proxy has no certificate, so it cannot reach meshed peers.
var ErrNoIdentity = errors.New("the proxy has no identity to reach meshed peers with")

// Dial connects to addr and completes a handshake in which the server proves
// want and agrees on alpn. Errors from the handshake are *Error.
func (d *Dialer) Dial(ctx context.Context, addr string, want spiffeid.ID, alpn string) (*tls.Conn, error) {
	if d == nil || d.Source == nil {
		return nil, &Error{Reason: "no_certificate", Err: ErrNoIdentity}
	}
	raw, err := d.Net(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, ClientConfig(d.Source, want, alpn, d.Sessions))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		var me *Error
		if !errors.As(err, &me) {
			err = &Error{Reason: "handshake", Err: err}
		}
		return nil, err
	}
	return tc, nil
}

// Plain hides a *tls.Conn behind the net.Conn interface, so that net/http
// treats the decrypted stream as plaintext and speaks prior-knowledge HTTP/2
// on it: the mesh's ALPN already said so.
type Plain struct{ net.Conn }

// TLS returns the underlying TLS connection.
func (p Plain) TLS() *tls.Conn { return p.Conn.(*tls.Conn) }

// CloseWrite sends close_notify, ending this direction of the stream.
func (p Plain) CloseWrite() error { return p.TLS().CloseWrite() }
