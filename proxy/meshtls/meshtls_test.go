package meshtls

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
)

type staticSource struct{ b *certs.Bundle }

func (s staticSource) Bundle() *certs.Bundle { return s.b }

func source(t *testing.T, ca *testpki.CA, id string) staticSource {
	t.Helper()
	leaf := ca.Issue(t, id, -time.Minute, time.Hour)
	b, err := certs.NewBundle(leaf.CertPEM(), leaf.KeyPEM(t), testpki.CertPEM(ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return staticSource{b}
}

// TestSessionsResume: a second connection to the same peer resumes the TLS
// 1.3 session instead of a full handshake, and still checks the identity.
func TestSessionsResume(t *testing.T) {
	ca := testpki.NewRoot(t, "root")
	server := source(t, ca, "spiffe://td/ns/a/sa/server")
	client := source(t, ca, "spiffe://td/ns/a/sa/client")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(server))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("x")) // the session ticket travels before this
				io.Copy(io.Discard, c)
			}()
		}
	}()
	d := &Dialer{Source: client, Net: (&net.Dialer{}).DialContext, Sessions: tls.NewLRUClientSessionCache(8)}
	want := server.b.ID
	for i, wantResumed := range []bool{false, true} {
		tc, err := d.Dial(context.Background(), ln.Addr().String(), want, ALPNOpaque)
		if err != nil {
			t.Fatal(err)
		}
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if got := tc.ConnectionState().DidResume; got != wantResumed {
			t.Errorf("connection %d resumed = %v, want %v", i, got, wantResumed)
		}
		tc.Close()
	}
	// A resumed session is still held to the identity the caller wants.
	other, _ := spiffeid.Parse("spiffe://td/ns/a/sa/other")
	if _, err := d.Dial(context.Background(), ln.Addr().String(), other, ALPNOpaque); Reason(err) != "identity_mismatch" {
		t.Errorf("resumed connection to the wrong identity: %v", err)
	}
}
