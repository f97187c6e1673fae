package identitysvc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/identity/spiffeid"
	"github.com/meshctl/meshctl/internal/api"
)

// tokens is a stand-in reviewer for the HTTP plumbing; what the API server
// decides is tested against a real one in e2e/identity_test.go.
type tokens map[string]string

func (t tokens) Review(_ context.Context, token, audience string) (string, error) {
	if audience != api.TokenAudience {
		return "", errors.New("wrong audience")
	}
	if u, ok := t[token]; ok {
		return u, nil
	}
	return "", errors.New("invalid token")
}

func newService(t *testing.T, reg prometheus.Registerer, burst int) *Service {
	t.Helper()
	anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(issuer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		CA: c, Reviewer: tokens{"good": "system:serviceaccount:shop:web", "user": "alice"},
		TrustRoots: func() []byte { return anchor.CertPEM() }, Registerer: reg, Burst: burst, RatePerSecond: 0.001,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func csrPEM(t *testing.T, id string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func post(t *testing.T, s *Service, body any) (*httptest.ResponseRecorder, api.Error) {
	t.Helper()
	b, _ := json.Marshal(body)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.CertificatePath, bytes.NewReader(b)))
	var e api.Error
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return rec, e
}

func TestIssuesForTheTokensServiceAccountOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newService(t, reg, 100)
	rec, _ := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: "good"})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var resp api.CertificateResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := spiffeid.FromCertificate(leaf); err != nil || id.String() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Errorf("issued for %v, %v", id, err)
	}
	if !strings.Contains(resp.TrustRoots, "BEGIN CERTIFICATE") {
		t.Error("no trust roots in the answer")
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		reason string
	}{
		{"another SA's ID", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/admin"), Token: "good"}, 403, "wrong_id"},
		{"no token", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web")}, 401, "no_token"},
		{"bad token", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: "garbage"}, 401, "token_invalid"},
		{"not a ServiceAccount", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: "user"}, 403, "not_a_service_account"},
		{"not PEM", api.CertificateRequest{CSR: "nonsense", Token: "good"}, 400, "bad_csr"},
		{"oversized", api.CertificateRequest{CSR: strings.Repeat("A", api.MaxCSRBytes+1), Token: "good"}, 400, "bad_csr"},
		{"not JSON", "[", 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, e := post(t, s, tc.body)
			if rec.Code != tc.status || e.Reason != tc.reason {
				t.Errorf("status %d reason %q (%s), want %d %q", rec.Code, e.Reason, e.Error, tc.status, tc.reason)
			}
		})
	}
	if v := testutil.ToFloat64(s.issued); v != 1 {
		t.Errorf("issued counter %v, want 1", v)
	}
	if v := testutil.ToFloat64(s.refused.WithLabelValues("wrong_id")); v != 1 {
		t.Errorf("refused{wrong_id} %v, want 1", v)
	}
}

func TestIssuanceIsRateLimitedPerServiceAccount(t *testing.T) {
	s := newService(t, nil, 3)
	codes := map[int]int{}
	for range 5 {
		rec, _ := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: "good"})
		codes[rec.Code]++
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Errorf("status codes %v, want 3×200 then 2×429", codes)
	}
}

func FuzzParseCSR(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := ParseCSR(s)
		if err == nil && csr == nil {
			t.Fatal("nil request without an error")
		}
	})
}
