package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/identity/spiffeid"
	"github.com/meshctl/meshctl/internal/api"
)

// TestIssuanceNeverPresentsTheWorkloadCertificate: the controller asks for
// client certificates on every connection; on issuance the client must not
// send its own, so that one that expired (or that the controller no longer
// trusts) can never stand in the way of its renewal.
func TestIssuanceNeverPresentsTheWorkloadCertificate(t *testing.T) {
	anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(issuer)
	if err != nil {
		t.Fatal(err)
	}
	controllerID := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "meshctl", ServiceAccount: "mesh-controller"}
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	sign := func(id spiffeid.ID, key *ecdsa.PrivateKey) []*x509.Certificate {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(der)
		chain, err := authority.Sign(csr, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return chain
	}
	ctrlKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serving := tls.Certificate{PrivateKey: ctrlKey}
	for _, c := range sign(controllerID, ctrlKey) {
		serving.Certificate = append(serving.Certificate, c.Raw)
	}

	var requests, presented atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if len(r.TLS.PeerCertificates) > 0 {
			presented.Add(1)
		}
		var req api.CertificateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		block, _ := pem.Decode([]byte(req.CSR))
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		chain, err := authority.Sign(csr, web, time.Hour)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out strings.Builder
		for _, c := range chain {
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		_ = json.NewEncoder(w).Encode(api.CertificateResponse{Certificate: out.String(), TrustRoots: string(anchor.CertPEM())})
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	tokenFile, rootsFile := filepath.Join(dir, "token"), filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(tokenFile, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootsFile, anchor.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Addr: srv.Listener.Addr().String(), ControllerID: controllerID, ID: web, TokenFile: tokenFile, RootsFile: rootsFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 { // the first issuance, then renewals holding a certificate
		b, err := c.obtain(ctx)
		if err != nil {
			t.Fatalf("issuance %d: %v", i+1, err)
		}
		c.current.Store(b)
		c.http.CloseIdleConnections() // a new handshake each time, where a certificate would be sent
	}
	if n := requests.Load(); n != 3 {
		t.Fatalf("%d requests reached the controller, want 3", n)
	}
	if n := presented.Load(); n != 0 {
		t.Errorf("the workload certificate was presented on %d of 3 issuance requests, want none", n)
	}
}
