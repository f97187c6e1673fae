package podstart

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy"
)

var (
	controllerID = spiffeid.ID{TrustDomain: "cluster.local", Namespace: "meshctl", ServiceAccount: "mesh-controller"}
	webID        = spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	backendID    = spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "backend"}
)

// fakeController serves the control API's certificate and inbound-policy
// endpoints over TLS, as the controller's SPIFFE ID, with a real CA.
type fakeController struct {
	srv       *httptest.Server
	root      *testpki.CA
	rootsFile string
	tokenFile string
	asked     atomic.Int64 // certificate requests
	issued    atomic.Int64 // certificates issued
	// policyFrom is the SPIFFE ID that opened the inbound-policy stream.
	policyFrom atomic.Value
	// policy releases the pod's inbound policy to the stream.
	policy chan api.InboundPolicy
}

func newFakeController(t *testing.T) *fakeController {
	t.Helper()
	c := &fakeController{root: testpki.NewRoot(t, "mesh root"), policy: make(chan api.InboundPolicy, 1)}
	dir := t.TempDir()
	c.rootsFile, c.tokenFile = filepath.Join(dir, "roots.pem"), filepath.Join(dir, "token")
	testpki.WriteAtomic(t, c.rootsFile, testpki.CertPEM(c.root.Cert))
	testpki.WriteAtomic(t, c.tokenFile, []byte("a.b.c\n"))

	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.CertificatePath, c.issue)
	mux.HandleFunc("GET "+api.InboundPolicyPath, func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.URL.Query().Get("pod") != "web-0" {
			http.Error(w, `{"error":"who?"}`, http.StatusBadRequest)
			return
		}
		id, _ := spiffeid.FromCertificate(r.TLS.PeerCertificates[0])
		c.policyFrom.Store(id)
		w.Header().Set("Content-Type", "application/jsonl")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case p := <-c.policy:
			_ = json.NewEncoder(w).Encode(p)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		case <-stop:
			return
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	ctrl := c.root.Issue(t, controllerID.String(), -time.Minute, time.Hour)
	pool := x509.NewCertPool()
	pool.AddCert(c.root.Cert)
	c.srv = httptest.NewUnstartedServer(mux)
	c.srv.EnableHTTP2 = true
	c.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ctrl.TLSCertificate()},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first: streams end, then the server closes
	return c
}

// issue signs the workload's CSR for the SPIFFE ID it asks, if its token is right.
func (c *fakeController) issue(w http.ResponseWriter, r *http.Request) {
	c.asked.Add(1)
	var req api.CertificateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Token != "a.b.c" {
		http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
		return
	}
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil {
		http.Error(w, `{"error":"no CSR"}`, http.StatusBadRequest)
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, `{"error":"bad CSR"}`, http.StatusBadRequest)
		return
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, URIs: csr.URIs,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, c.root.Cert, csr.PublicKey, c.root.Key)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err), http.StatusInternalServerError)
		return
	}
	c.issued.Add(1)
	_ = json.NewEncoder(w).Encode(api.CertificateResponse{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		TrustRoots:  string(testpki.CertPEM(c.root.Cert)),
	})
}

// started is a Run in a goroutine.
type started struct {
	p    *proxy.Proxy
	stop func() error
}

// start runs cfg, with every listener on a free loopback port, and returns
// once the proxy listens.
func start(t *testing.T, cfg Config) *started {
	t.Helper()
	cfg.Proxy.Admin = "127.0.0.1:0"
	listening := make(chan *proxy.Proxy, 1)
	cfg.listening = func(p *proxy.Proxy) { listening <- p }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context's end")
			return nil
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case p := <-listening:
		return &started{p: p, stop: stop}
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not listen within 15s")
	}
	return nil
}

// app is an HTTP server that answers with its name.
func app(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// get returns the status and body of GET url (no keep-alive).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// eventually polls cond every 20ms until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

// TestPodGetsItsCertificateAndWaitsForItsInboundPolicy: in a pod, the proxy
// listens only once the controller issued its certificate (over TLS, proving
// the ServiceAccount token); it follows the pod's inbound policy over mutual
// TLS with that certificate, and lets nothing in, and is not ready, until
// the policy arrived.
func TestPodGetsItsCertificateAndWaitsForItsInboundPolicy(t *testing.T) {
	ctrl := newFakeController(t)
	s := start(t, Config{
		Proxy: proxy.Config{
			Inbound:      &proxy.SideConfig{Listen: "127.0.0.1:0", Upstream: app(t, "web")},
			ControllerID: controllerID,
		},
		IdentityAddr: ctrl.srv.Listener.Addr().String(),
		RootsFile:    ctrl.rootsFile, TokenFile: ctrl.tokenFile, ID: webID,
		Discovery: true, PodName: "web-0",
	})
	if n := ctrl.issued.Load(); n != 1 {
		t.Errorf("the proxy listened after %d certificates issued, want 1", n)
	}
	admin, inbound := "http://"+s.p.Addr("admin").String(), "http://"+s.p.Addr("inbound").String()
	eventually(t, "the inbound-policy stream opened", func() bool { return ctrl.policyFrom.Load() != nil })
	if id := ctrl.policyFrom.Load(); id != webID {
		t.Errorf("the inbound-policy stream came from %v, want %v", id, webID)
	}
	if code, _ := get(t, admin+"/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready before the policy: %d, want 503", code)
	}
	if code, body := get(t, inbound+"/"); code == http.StatusOK {
		t.Errorf("inbound before the policy: %d %q, want a refusal", code, body)
	}

	ctrl.policy <- api.InboundPolicy{Default: "all-unauthenticated"}
	eventually(t, "ready once the policy arrived", func() bool { code, _ := get(t, admin+"/ready"); return code == http.StatusOK })
	if code, body := get(t, inbound+"/"); code != http.StatusOK || body != "web" {
		t.Errorf("inbound after the policy: %d %q, want 200 \"web\"", code, body)
	}
	if err := s.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestStopWhileWaitingForTheCertificate: a pod told to stop before the
// controller answered stops at once, without error and without listening.
func TestStopWhileWaitingForTheCertificate(t *testing.T) {
	ctrl := newFakeController(t)
	testpki.WriteAtomic(t, ctrl.tokenFile, []byte("wrong\n")) // every issuance is refused
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Proxy: proxy.Config{
				Inbound:      &proxy.SideConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
				Admin:        "127.0.0.1:0",
				ControllerID: controllerID,
			},
			IdentityAddr: ctrl.srv.Listener.Addr().String(),
			RootsFile:    ctrl.rootsFile, TokenFile: ctrl.tokenFile, ID: webID,
			listening: func(*proxy.Proxy) { t.Error("listening without a certificate") },
		})
	}()
	eventually(t, "a certificate request", func() bool { return ctrl.asked.Load() > 0 })
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before its context ended", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context's end")
	}
	if n := ctrl.issued.Load(); n != 0 {
		t.Errorf("%d certificates issued for a wrong token", n)
	}
}

// TestExplicitModeWithCertificateFiles: two proxies with certificate files,
// the client's outbound requiring the server's SPIFFE ID, carry a request
// over mutual TLS; one requiring another ID gets no answer from the app.
func TestExplicitModeWithCertificateFiles(t *testing.T) {
	root := testpki.NewRoot(t, "mesh root")
	files := func(id spiffeid.ID) testpki.Files {
		dir := t.TempDir()
		return root.Issue(t, id.String(), -time.Minute, time.Hour).Write(t, dir, root)
	}
	sf := files(backendID)
	server := start(t, Config{
		Proxy:    proxy.Config{Inbound: &proxy.SideConfig{Listen: "127.0.0.1:0", Upstream: app(t, "backend")}, RequireTLSPorts: []uint16{}},
		CertFile: sf.Cert, KeyFile: sf.Key, RootsFile: sf.Roots,
	})
	upstream := server.p.Addr("inbound").String()
	cf := files(webID)
	for _, tc := range []struct {
		want spiffeid.ID
		ok   bool
	}{{backendID, true}, {webID, false}} {
		out := &proxy.SideConfig{Listen: "127.0.0.1:0", Upstream: upstream, UpstreamIdentity: tc.want}
		client := start(t, Config{Proxy: proxy.Config{Outbound: out}, CertFile: cf.Cert, KeyFile: cf.Key, RootsFile: cf.Roots})
		code, body := get(t, "http://"+client.p.Addr("outbound").String()+"/")
		if got := code == http.StatusOK && body == "backend"; got != tc.ok {
			t.Errorf("upstream must prove %v: %d %q; want success %v", tc.want, code, body, tc.ok)
		}
		if out.Listen != "127.0.0.1:0" {
			t.Errorf("Run changed the caller's SideConfig: %+v", out)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	in := &proxy.SideConfig{Listen: "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"both identities", Config{Proxy: proxy.Config{Inbound: in}, IdentityAddr: "127.0.0.1:1", CertFile: missing}, "not both"},
		{"identity service without roots", Config{Proxy: proxy.Config{Inbound: in}, IdentityAddr: "127.0.0.1:1"}, "trust bundle"},
		{"missing files", Config{Proxy: proxy.Config{Inbound: in}, CertFile: missing, KeyFile: missing, RootsFile: missing}, "workload certificate"},
		{"incomplete files", Config{Proxy: proxy.Config{Inbound: in}, CertFile: missing}, "all required"},
		{"upstream identity without a certificate", Config{Proxy: proxy.Config{
			Outbound: &proxy.SideConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", UpstreamIdentity: backendID}}}, "certificate"},
		{"nothing to proxy", Config{}, "nothing to proxy"},
	} {
		err := Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}
