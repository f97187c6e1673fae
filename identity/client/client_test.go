package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
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

// pki is a trust anchor with an issuer under it.
type pki struct {
	anchor *ca.KeyPair
	ca     *ca.CA
}

func newPKI(t *testing.T) pki {
	t.Helper()
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
	return pki{anchor: anchor, ca: authority}
}

// issue signs a fresh key's certificate for id: the chain, leaf first, as
// a TLS peer presents it.
func (p pki) issue(t *testing.T, id spiffeid.ID) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	chain, err := p.ca.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// fakeController issues for one workload from p, serving the control API
// with serving (swappable) and answering with bundle (swappable) as its
// trust roots.
type fakeController struct {
	srv      *httptest.Server
	serving  atomic.Pointer[tls.Certificate]
	bundle   atomic.Pointer[[]byte]
	requests atomic.Int64
}

func newFakeController(t *testing.T, p pki, workload spiffeid.ID, serving tls.Certificate, bundle []byte) *fakeController {
	t.Helper()
	fc := &fakeController{}
	fc.serving.Store(&serving)
	fc.bundle.Store(&bundle)
	fc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc.requests.Add(1)
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
		chain, err := p.ca.Sign(csr, workload, time.Hour)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out strings.Builder
		for _, c := range chain {
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		_ = json.NewEncoder(w).Encode(api.CertificateResponse{Certificate: out.String(), TrustRoots: string(*fc.bundle.Load())})
	}))
	fc.srv.EnableHTTP2 = true
	// Per connection, so that the serving certificate can be swapped
	// (GetCertificate is not asked when the client sends no SNI, as to an IP).
	fc.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*fc.serving.Load()}}, nil
	}}
	fc.srv.StartTLS()
	t.Cleanup(fc.srv.Close)
	return fc
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTrustRootsComeFromTheControllerNotTheFile: the mounted file (a copy
// in the workload's namespace, which its users may write) only bootstraps
// the first connection. After that, a root added to the file is trusted
// neither for peers nor for the controller, and the controller's bundle is;
// a renewal brings the controller's new bundle in.
func TestTrustRootsComeFromTheControllerNotTheFile(t *testing.T) {
	mesh, attacker, next := newPKI(t), newPKI(t), newPKI(t)
	controllerID := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "meshctl", ServiceAccount: "mesh-controller"}
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	admin := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "admin"}
	fc := newFakeController(t, mesh, web, mesh.issue(t, controllerID), mesh.anchor.CertPEM())

	dir := t.TempDir()
	tokenFile, rootsFile := filepath.Join(dir, "token"), filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(tokenFile, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeRoots := func(pems ...[]byte) {
		t.Helper()
		tmp := rootsFile + ".tmp"
		if err := os.WriteFile(tmp, bytes.Join(pems, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, rootsFile); err != nil {
			t.Fatal(err)
		}
	}
	writeRoots(mesh.anchor.CertPEM())
	logs := &recorder{}
	c, err := New(Config{
		Addr: fc.srv.Listener.Addr().String(), ControllerID: controllerID, ID: web,
		TokenFile: tokenFile, RootsFile: rootsFile, Poll: 5 * time.Millisecond, Log: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no certificate")
	}
	trusts := func(peer tls.Certificate) bool {
		_, err := certs.VerifyChain(peer.Certificate, c.Bundle().Roots, time.Now())
		return err == nil
	}
	if !trusts(mesh.issue(t, admin)) {
		t.Fatal("a peer from the controller's bundle is not trusted")
	}

	// Someone who may write ConfigMaps in the namespace adds their root to
	// the copy; the kubelet delivers it. The client asks the controller
	// (one renewal) and keeps the controller's bundle.
	before := fc.requests.Load()
	writeRoots(mesh.anchor.CertPEM(), attacker.anchor.CertPEM())
	waitFor(t, "the client notices the file's change", func() bool {
		return fc.requests.Load() > before || len(c.Bundle().RootCerts) != 1
	})
	if trusts(attacker.issue(t, admin)) {
		t.Fatal("a peer certificate from a root added to the file is trusted")
	}
	waitFor(t, "the file's change is checked with the controller", func() bool { return fc.requests.Load() > before })
	waitFor(t, "the disagreement is logged at warn", func() bool { return logs.has(slog.LevelWarn, "differs") })
	if !trusts(mesh.issue(t, admin)) {
		t.Fatal("a peer from the controller's bundle is no longer trusted")
	}
	if got := len(c.Bundle().RootCerts); got != 1 || !c.Bundle().RootCerts[0].Equal(mesh.anchor.Cert) {
		t.Fatalf("the bundle holds %d roots, want the controller's one", got)
	}
	// Nor is it trusted for the controller: one that proves the
	// controller's ID with a certificate from that root gets no request.
	fc.serving.Store(ptr(attacker.issue(t, controllerID)))
	fc.srv.CloseClientConnections()
	c.http.CloseIdleConnections()
	before = fc.requests.Load()
	serial := c.Bundle().Leaf().SerialNumber
	c.RenewNow()
	waitFor(t, "the impostor is refused", func() bool { return logs.has(slog.LevelWarn, "could not get a certificate") })
	if n := fc.requests.Load() - before; n != 0 || c.Bundle().Leaf().SerialNumber.Cmp(serial) != 0 {
		t.Fatalf("a controller proving itself with a root from the file got %d requests (certificate changed: %v)", n, c.Bundle().Leaf().SerialNumber.Cmp(serial) != 0)
	}

	// The controller's bundle changes (a trust-anchor rotation, stage 1):
	// a renewal brings it in, whatever the file says.
	fc.serving.Store(ptr(mesh.issue(t, controllerID)))
	fc.srv.CloseClientConnections()
	c.http.CloseIdleConnections()
	rotated := append(mesh.anchor.CertPEM(), next.anchor.CertPEM()...)
	fc.bundle.Store(&rotated)
	if trusts(next.issue(t, admin)) {
		t.Fatal("a peer from the next anchor is trusted before the controller says so")
	}
	c.RenewNow()
	waitFor(t, "the renewal brings the controller's new bundle", func() bool { return len(c.Bundle().RootCerts) == 2 })
	if !trusts(next.issue(t, admin)) || !trusts(mesh.issue(t, admin)) {
		t.Fatal("after the renewal, peers from both of the controller's anchors must be trusted")
	}
	if trusts(attacker.issue(t, admin)) {
		t.Fatal("after the renewal, the file's extra root is trusted")
	}
}

// TestTheFileBootstrapsUntilTheControllerAnswers: before the first
// issuance, the file is what the controller is verified with, and a change
// of it (the kubelet delivering a rotated bundle) is followed.
func TestTheFileBootstrapsUntilTheControllerAnswers(t *testing.T) {
	old, mesh := newPKI(t), newPKI(t)
	controllerID := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "meshctl", ServiceAccount: "mesh-controller"}
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	fc := newFakeController(t, mesh, web, mesh.issue(t, controllerID), mesh.anchor.CertPEM())
	dir := t.TempDir()
	tokenFile, rootsFile := filepath.Join(dir, "token"), filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(tokenFile, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootsFile, old.anchor.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Addr: fc.srv.Listener.Addr().String(), ControllerID: controllerID, ID: web, TokenFile: tokenFile, RootsFile: rootsFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.obtain(context.Background()); err == nil || fc.requests.Load() != 0 {
		t.Fatalf("a controller the bootstrap file does not trust was asked (%v)", err)
	}
	if err := os.WriteFile(rootsFile, mesh.anchor.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.http.CloseIdleConnections()
	if _, err := c.obtain(context.Background()); err != nil {
		t.Fatalf("after the file changed: %v", err)
	}
}

// TestACertificateOutsideTheControllersBundleIsRefused: a bundle the issued
// certificate does not chain to would have every peer refuse it.
func TestACertificateOutsideTheControllersBundleIsRefused(t *testing.T) {
	mesh, other := newPKI(t), newPKI(t)
	controllerID := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "meshctl", ServiceAccount: "mesh-controller"}
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	fc := newFakeController(t, mesh, web, mesh.issue(t, controllerID), other.anchor.CertPEM())
	dir := t.TempDir()
	tokenFile, rootsFile := filepath.Join(dir, "token"), filepath.Join(dir, "roots.pem")
	_ = os.WriteFile(tokenFile, []byte("a.b.c\n"), 0o600)
	_ = os.WriteFile(rootsFile, mesh.anchor.CertPEM(), 0o600)
	c, err := New(Config{Addr: fc.srv.Listener.Addr().String(), ControllerID: controllerID, ID: web, TokenFile: tokenFile, RootsFile: rootsFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.obtain(context.Background()); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("obtain = %v, want a refusal of the bundle", err)
	}
	if _, err := certs.VerifyChain(fc.serving.Load().Certificate, c.trust.Load(), time.Now()); err != nil {
		t.Fatalf("the refused bundle was taken: the controller is no longer trusted (%v)", err)
	}
}

func ptr[T any](v T) *T { return &v }

// recorder is a slog handler that keeps every record.
type recorder struct {
	mu      sync.Mutex // guards records
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// has reports a record at level whose message contains s.
func (r *recorder) has(level slog.Level, s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Level == level && strings.Contains(rec.Message, s) {
			return true
		}
	}
	return false
}
