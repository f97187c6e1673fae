package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/controller/identitysvc"
	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// acceptAll stands in for the API server: every token belongs to shop/web.
type acceptAll struct{}

func (acceptAll) Review(context.Context, string, string) (string, error) {
	return "system:serviceaccount:shop:web", nil
}

// projectedToken has the shape of a projected ServiceAccount token.
func projectedToken() string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(map[string]any{
		"aud": []string{api.TokenAudience}, "sub": "system:serviceaccount:shop:web", "exp": time.Now().Add(10 * time.Minute).Unix(),
	})
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(payload) + ".sig"
}

// leafFrom signs a workload certificate for id valid from now+from to
// now+until (both may be in the past), with the issuer's chain.
func leafFrom(t *testing.T, issuer *ca.KeyPair, id spiffeid.ID, from, until time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{id.URL()},
		NotBefore: time.Now().Add(from), NotAfter: time.Now().Add(until),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, issuer.Cert.Raw}, PrivateKey: key}
}

// TestAnExpiredCertificateCanBeRenewedButOpensNothingElse runs the control
// API's TLS server and routes as Run does: a proxy whose certificate expired
// (the controller was away longer than its life) still gets a new one on
// /v1/certificate, by its token alone, and is refused everywhere else until
// it presents the new one.
func TestAnExpiredCertificateCanBeRenewedButOpensNothingElse(t *testing.T) {
	anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	cm, sec := trustObjects(t, anchor, issuer)
	c.trust.loadRoots(cm)
	c.trust.loadIssuer(sec)
	if err := c.renewOwn(); err != nil {
		t.Fatal(err)
	}
	svc, err := identitysvc.New(identitysvc.Config{CA: c.trust.ca.Load(), Reviewer: acceptAll{}, TrustRoots: c.trust.Roots})
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: c.controlHandler(svc, ok, ok), TLSConfig: c.serverTLS(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	base := "https://" + ln.Addr().String()

	// client presents cert (nil: none) over HTTP/2, as proxies do.
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} // this test is about the client's certificate
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	}
	web := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "web"}
	expired := leafFrom(t, issuer, web, -48*time.Hour, -time.Hour)
	proxy := client(&expired)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(api.CertificateRequest{
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), Token: projectedToken(),
	})
	resp, err := proxy.Post(base+api.CertificatePath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("issuance with an expired client certificate: %v", err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("issuance with an expired client certificate: %s over HTTP/%d: %s", resp.Status, resp.ProtoMajor, data)
	}
	var issued api.CertificateResponse
	if err := json.Unmarshal(data, &issued); err != nil {
		t.Fatal(err)
	}

	get := func(cl *http.Client, path string) (int, api.Error) {
		t.Helper()
		resp, err := cl.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	for _, path := range []string{api.DestinationsPath + "?target=web.shop.svc:80", api.InboundPolicyPath + "?pod=web-1", "/v1/other"} {
		if code, e := get(proxy, path); code != http.StatusUnauthorized || e.Reason != "bad_client_certificate" {
			t.Errorf("GET %s with an expired certificate: %d %q, want 401 bad_client_certificate", path, code, e.Reason)
		}
		if code, e := get(client(nil), path); code != http.StatusUnauthorized || e.Reason != "no_client_certificate" {
			t.Errorf("GET %s without a certificate: %d %q, want 401 no_client_certificate", path, code, e.Reason)
		}
	}
	// A certificate from another CA is refused as well.
	otherAnchor, _ := ca.NewTrustAnchor("cluster.local", time.Hour)
	otherIssuer, _ := ca.NewIssuer(otherAnchor, "cluster.local", time.Hour)
	stranger := leafFrom(t, otherIssuer, web, -time.Minute, time.Hour)
	if code, _ := get(client(&stranger), api.DestinationsPath); code != http.StatusUnauthorized {
		t.Errorf("a certificate of another trust domain's CA: %d, want 401", code)
	}

	// The renewed certificate opens the other paths.
	renewed, err := tls.X509KeyPair([]byte(issued.Certificate), pemKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if code, e := get(client(&renewed), api.DestinationsPath+"?target=web.shop.svc:80"); code != http.StatusOK {
		t.Errorf("with the renewed certificate: %d %s", code, e.Error)
	}
}

func pemKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestLeafLifetimeIsCapped(t *testing.T) {
	for _, tc := range []struct {
		life time.Duration
		ok   bool
	}{{0, true}, {time.Hour, true}, {meshnames.MaxLeafLifetime, true}, {meshnames.MaxLeafLifetime + time.Second, false}, {365 * 24 * time.Hour, false}, {time.Second, false}} {
		err := Config{Client: fake.NewClientset(), LeafLifetime: tc.life}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("LeafLifetime %v: Validate = %v, want ok=%v", tc.life, err, tc.ok)
		}
		if err != nil && tc.life > meshnames.MaxLeafLifetime && !strings.Contains(err.Error(), "too long") {
			t.Errorf("LeafLifetime %v: %v", tc.life, err)
		}
	}
}
