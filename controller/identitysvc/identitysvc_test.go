package identitysvc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// reviewer is a stand-in for the API server that counts the reviews it is
// asked for; what the API server decides is tested against a real one in
// e2e/identity_test.go. It knows tokens by their subject.
type reviewer struct {
	users map[string]string // sub → the user the review says
	calls atomic.Int64
	block chan struct{} // when set, every review waits for it to close
}

func (rv *reviewer) Review(ctx context.Context, token, audience string) (string, error) {
	rv.calls.Add(1)
	if rv.block != nil {
		select {
		case <-rv.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if audience != api.TokenAudience {
		return "", errors.New("wrong audience")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(payload, &c)
	if u, ok := rv.users[c.Sub]; ok && strings.HasSuffix(token, ".signed") {
		return u, nil
	}
	return "", errors.New("invalid token")
}

// jwt makes an (unsigned) token with the given claims; a reviewer accepts
// only those whose signature part is "signed".
func jwt(claims map[string]any, sig string) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc.EncodeToString(payload) + "." + sig
}

// token is a well-formed token for sub, valid for ten minutes.
func token(sub string) string {
	return jwt(map[string]any{"aud": []string{api.TokenAudience}, "sub": sub, "exp": time.Now().Add(10 * time.Minute).Unix()}, "signed")
}

func newService(t *testing.T, reg prometheus.Registerer, burst int) (*Service, *reviewer) {
	t.Helper()
	return newServiceWith(t, Config{Registerer: reg, Burst: burst, RatePerSecond: 0.001})
}

func newServiceWith(t *testing.T, cfg Config) (*Service, *reviewer) {
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
	rv := &reviewer{users: map[string]string{
		"system:serviceaccount:shop:web":  "system:serviceaccount:shop:web",
		"system:serviceaccount:shop:fake": "alice", // the API server says who it is, not the token
	}}
	cfg.CA, cfg.Reviewer, cfg.TrustRoots = c, rv, func() []byte { return anchor.CertPEM() }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, rv
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
	return postFrom(t, s, "192.0.2.1:40000", body)
}

// postFrom posts body (JSON-encoded unless it is []byte) from a source address.
func postFrom(t *testing.T, s *Service, remote string, body any) (*httptest.ResponseRecorder, api.Error) {
	t.Helper()
	b, ok := body.([]byte)
	if !ok {
		b, _ = json.Marshal(body)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, api.CertificatePath, bytes.NewReader(b))
	req.RemoteAddr = remote
	s.ServeHTTP(rec, req)
	var e api.Error
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return rec, e
}

func TestIssuesForTheTokensServiceAccountOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := newService(t, reg, 100)
	good := token("system:serviceaccount:shop:web")
	rec, _ := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: good})
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
		{"another SA's ID", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/admin"), Token: good}, 403, "wrong_id"},
		{"no token", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web")}, 401, "no_token"},
		{"token the API server refuses", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"),
			Token: jwt(map[string]any{"aud": api.TokenAudience, "sub": "system:serviceaccount:shop:web", "exp": time.Now().Add(time.Minute).Unix()}, "forged")}, 401, "token_invalid"},
		{"not a ServiceAccount", api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: token("system:serviceaccount:shop:fake")}, 403, "not_a_service_account"},
		{"not PEM", api.CertificateRequest{CSR: "nonsense", Token: good}, 400, "bad_csr"},
		{"oversized", api.CertificateRequest{CSR: strings.Repeat("A", api.MaxCSRBytes+1), Token: good}, 400, "bad_csr"},
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
	s, _ := newService(t, nil, 3)
	codes := map[int]int{}
	for range 5 {
		rec, _ := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: token("system:serviceaccount:shop:web")})
		codes[rec.Code]++
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Errorf("status codes %v, want 3×200 then 2×429", codes)
	}
}

func TestTokensThatCannotPassCostNoReview(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, rv := newService(t, reg, 100)
	now := time.Now()
	claims := func(change map[string]any) map[string]any {
		c := map[string]any{"aud": []string{"https://kubernetes.default.svc", api.TokenAudience}, "sub": "system:serviceaccount:shop:web", "exp": now.Add(10 * time.Minute).Unix()}
		for k, v := range change {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"not a JWT", "garbage", "token_malformed"},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0", "token_malformed"},
		{"four parts", jwt(claims(nil), "signed") + ".x", "token_malformed"},
		{"not base64url", "e30.e30.!!!", "token_malformed"},
		{"empty signature", jwt(claims(nil), ""), "token_malformed"},
		{"payload not JSON", b64([]byte(`{}`)) + "." + b64([]byte("nope")) + ".signed", "token_malformed"},
		{"header not JSON", b64([]byte("nope")) + "." + b64([]byte(`{}`)) + ".signed", "token_malformed"},
		{"oversized", jwt(claims(map[string]any{"pad": strings.Repeat("x", 9000)}), "signed"), "token_malformed"},
		{"no expiry", jwt(claims(map[string]any{"exp": nil}), "signed"), "token_malformed"},
		{"expired", jwt(claims(map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}), "signed"), "token_expired"},
		{"expires in a year", jwt(claims(map[string]any{"exp": now.Add(365 * 24 * time.Hour).Unix()}), "signed"), "token_expired"},
		{"expiry out of range", jwt(claims(map[string]any{"exp": 1e300}), "signed"), "token_expired"},
		{"another audience", jwt(claims(map[string]any{"aud": "https://kubernetes.default.svc"}), "signed"), "token_audience"},
		{"no audience", jwt(claims(map[string]any{"aud": nil}), "signed"), "token_audience"},
		{"a user", jwt(claims(map[string]any{"sub": "alice"}), "signed"), "token_malformed"},
		{"no subject", jwt(claims(map[string]any{"sub": nil}), "signed"), "token_malformed"},
		{"bad namespace", jwt(claims(map[string]any{"sub": "system:serviceaccount:Shop:web"}), "signed"), "token_malformed"},
		{"extra part", jwt(claims(map[string]any{"sub": "system:serviceaccount:shop:web:x"}), "signed"), "token_malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(s.refused.WithLabelValues(tc.reason))
			rec, e := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: tc.token})
			if rec.Code != 401 || e.Reason != tc.reason {
				t.Errorf("status %d reason %q (%s), want 401 %q", rec.Code, e.Reason, e.Error, tc.reason)
			}
			if got := testutil.ToFloat64(s.refused.WithLabelValues(tc.reason)); got != before+1 {
				t.Errorf("refused{%s} went from %v to %v", tc.reason, before, got)
			}
		})
	}
	if n := rv.calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews for tokens that cannot pass, want 0", n)
	}
	// The audience in a one-element string form, and an expiry within the
	// leeway, pass the local check: the review decides.
	for _, tok := range []string{
		jwt(claims(map[string]any{"aud": api.TokenAudience}), "signed"),
		jwt(claims(map[string]any{"exp": now.Add(-10 * time.Second).Unix()}), "signed"),
	} {
		if rec, e := post(t, s, api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: tok}); rec.Code != 200 {
			t.Errorf("a token the API server may accept: %d %s", rec.Code, e.Error)
		}
	}
	if n := rv.calls.Load(); n != 2 {
		t.Errorf("%d TokenReviews, want 2", n)
	}
}

// TestATokenFromAnotherPodCostsNoReview: the local check verifies no
// signature, so a forged token of the right shape would cost a TokenReview
// each; with the pods' addresses known, a token whose ServiceAccount is not
// that of the pod the request comes from, or a request from an address no
// pod holds, is refused before any review.
func TestATokenFromAnotherPodCostsNoReview(t *testing.T) {
	pods := map[netip.Addr][2]string{
		netip.MustParseAddr("10.244.0.7"): {"shop", "web"},
		netip.MustParseAddr("10.244.0.8"): {"shop", "attacker"},
		netip.MustParseAddr("fd00::8"):    {"other", "web"},
	}
	var lookups atomic.Int64
	s, rv := newServiceWith(t, Config{Burst: 100, RatePerSecond: 100, PodBySourceIP: func(ip netip.Addr) (string, string, bool) {
		lookups.Add(1)
		p, ok := pods[ip]
		return p[0], p[1], ok
	}})
	web := func(sig string) api.CertificateRequest {
		return api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"),
			Token: jwt(map[string]any{"aud": api.TokenAudience, "sub": "system:serviceaccount:shop:web", "exp": time.Now().Add(10 * time.Minute).Unix()}, sig)}
	}
	for _, tc := range []struct {
		name, from, reason string
	}{
		{"another ServiceAccount's pod", "10.244.0.8:40000", "token_not_for_source"},
		{"the same ServiceAccount name in another namespace", "[fd00::8]:40000", "token_not_for_source"},
		{"an address no pod holds", "10.244.9.9:40000", "unknown_source"},
		{"the host", "192.0.2.1:40000", "unknown_source"},
		{"an IPv4-mapped address no pod holds", "[::ffff:10.244.9.9]:40000", "unknown_source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(s.refused.WithLabelValues(tc.reason))
			for _, sig := range []string{"forged", "signed"} { // forged or real, from the wrong place
				rec, e := postFrom(t, s, tc.from, web(sig))
				if rec.Code != http.StatusForbidden || e.Reason != tc.reason {
					t.Errorf("%s token: status %d reason %q (%s), want 403 %q", sig, rec.Code, e.Reason, e.Error, tc.reason)
				}
			}
			if got := testutil.ToFloat64(s.refused.WithLabelValues(tc.reason)); got != before+2 {
				t.Errorf("refused{%s} went from %v to %v, want +2", tc.reason, before, got)
			}
		})
	}
	if n := rv.calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews for tokens from the wrong place, want 0", n)
	}
	// From its own pod (IPv4, and as an IPv4-mapped address) a token is
	// reviewed as before: a forged one is refused by the review, a real one
	// gets its certificate.
	if rec, e := postFrom(t, s, "10.244.0.7:40000", web("forged")); rec.Code != http.StatusUnauthorized || e.Reason != "token_invalid" {
		t.Errorf("a forged token from its pod: %d %q, want 401 token_invalid", rec.Code, e.Reason)
	}
	for _, from := range []string{"10.244.0.7:40000", "[::ffff:10.244.0.7]:40000"} {
		if rec, e := postFrom(t, s, from, web("signed")); rec.Code != http.StatusOK {
			t.Errorf("a real token from its pod (%s): %d %s", from, rec.Code, e.Error)
		}
	}
	if n := rv.calls.Load(); n != 3 {
		t.Errorf("%d TokenReviews, want 3 (the requests from the token's own pod)", n)
	}
	if lookups.Load() == 0 {
		t.Error("the pod lookup was never asked")
	}
}

func TestASourceOverItsLimitCostsNoReview(t *testing.T) {
	s, rv := newServiceWith(t, Config{SourceBurst: 3, SourceRatePerSecond: 0.001, Burst: 100, RatePerSecond: 100})
	req := func() api.CertificateRequest {
		return api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: token("system:serviceaccount:shop:web")}
	}
	codes := map[int]int{}
	for range 5 {
		rec, e := postFrom(t, s, "10.1.2.3:5000", req())
		codes[rec.Code]++
		if rec.Code == 429 && (rec.Header().Get("Retry-After") == "" || e.Reason != "rate_limited_source") {
			t.Errorf("429 without Retry-After or with reason %q", e.Reason)
		}
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Errorf("status codes %v, want 3×200 then 2×429", codes)
	}
	if n := rv.calls.Load(); n != 3 {
		t.Errorf("%d TokenReviews, want 3 (none for the requests over the limit)", n)
	}
	// Another source (another port of the first does not count) is not held back.
	if rec, _ := postFrom(t, s, "10.1.2.3:5001", req()); rec.Code != 429 {
		t.Errorf("same address, another port: %d, want 429", rec.Code)
	}
	if rec, e := postFrom(t, s, "[fd00::7]:5000", req()); rec.Code != 200 {
		t.Errorf("another source: %d %s", rec.Code, e.Error)
	}
}

func TestReviewsInFlightAreBounded(t *testing.T) {
	s, rv := newServiceWith(t, Config{MaxConcurrentReviews: 2, ReviewWait: 50 * time.Millisecond, Burst: 100, RatePerSecond: 100})
	rv.block = make(chan struct{})
	req := func() api.CertificateRequest {
		return api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: token("system:serviceaccount:shop:web")}
	}
	done := make(chan int, 2)
	for i := range 2 {
		body := req()
		go func() {
			rec, _ := postFrom(t, s, fmt.Sprintf("10.0.0.%d:1", i+1), body)
			done <- rec.Code
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); rv.calls.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first two reviews never started")
		}
	}
	start := time.Now()
	rec, e := postFrom(t, s, "10.0.0.9:1", req())
	if rec.Code != 503 || e.Reason != "busy" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a third review while two are in flight: %d %q, want 503 busy with Retry-After", rec.Code, e.Reason)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("answered after %s: it should not queue", waited)
	}
	if n := rv.calls.Load(); n != 2 {
		t.Errorf("%d reviews, want 2", n)
	}
	close(rv.block)
	for range 2 {
		if code := <-done; code != 200 {
			t.Errorf("a blocked review ended with %d", code)
		}
	}
	// The slots are free again.
	if rec, e := postFrom(t, s, "10.0.0.9:1", req()); rec.Code != 200 {
		t.Errorf("after the reviews ended: %d %s", rec.Code, e.Error)
	}
}

// oversizedRSACSR is a PEM request carrying a bits-bit RSA key; its
// signature is junk (making the key would take minutes), which is enough:
// the key must be refused before the signature is looked at.
func oversizedRSACSR(t *testing.T, bits int) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		TBS struct {
			Raw        asn1.RawContent
			Version    int
			Subject    asn1.RawValue
			PublicKey  asn1.RawValue
			Attributes []asn1.RawValue `asn1:"tag:0"`
		}
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		t.Fatal(err)
	}
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	spki, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	req.TBS.Raw, req.TBS.PublicKey = nil, asn1.RawValue{FullBytes: spki}
	req.Alg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}} // SHA256WithRSA
	req.Sig = asn1.BitString{Bytes: make([]byte, bits/8), BitLength: bits}
	out, err := asn1.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCSR(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: out}))); err != nil {
		t.Fatalf("the crafted request does not parse: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: out}))
}

func TestOversizedRSAKeysAreRefusedBeforeAReview(t *testing.T) {
	s, rv := newService(t, nil, 100)
	for _, bits := range []int{8192, 16384} {
		rec, e := post(t, s, api.CertificateRequest{CSR: oversizedRSACSR(t, bits), Token: token("system:serviceaccount:shop:web")})
		if rec.Code != 400 || e.Reason != "weak_key" {
			t.Errorf("RSA %d: status %d reason %q (%s), want 400 weak_key", bits, rec.Code, e.Reason, e.Error)
		}
	}
	if n := rv.calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews for requests with oversized keys, want 0", n)
	}
}

func TestABodyJustOverTheLimitIs413(t *testing.T) {
	s, _ := newService(t, nil, 100)
	valid := func(size int) []byte {
		b, _ := json.Marshal(api.CertificateRequest{CSR: csrPEM(t, "spiffe://cluster.local/ns/shop/sa/web"), Token: token("system:serviceaccount:shop:web")})
		// Pad with JSON whitespace: still a valid request.
		return append(b[:len(b)-1], append(bytes.Repeat([]byte(" "), size-len(b)), '}')...)
	}
	at := valid(maxBodyBytes)
	if rec, e := postFrom(t, s, "192.0.2.7:1", at); len(at) != maxBodyBytes || rec.Code != 200 {
		t.Fatalf("a valid request of exactly %d bytes: %d %s", len(at), rec.Code, e.Error)
	}
	over := valid(maxBodyBytes + 1)
	rec, e := postFrom(t, s, "192.0.2.7:1", over)
	if len(over) != maxBodyBytes+1 || rec.Code != 413 || e.Reason != "too_large" {
		t.Errorf("a valid request of %d bytes: status %d reason %q, want 413 too_large", len(over), rec.Code, e.Reason)
	}
	if v := testutil.ToFloat64(s.refused.WithLabelValues("too_large")); v != 1 {
		t.Errorf("refused{too_large} = %v, want 1", v)
	}
}

func FuzzCheckToken(f *testing.F) {
	f.Add(token("system:serviceaccount:shop:web"))
	f.Add("a.b.c")
	f.Add("e30.e30.e30")
	f.Fuzz(func(t *testing.T, tok string) {
		_, _, err := CheckToken(tok, api.TokenAudience, time.Now())
		var te *TokenError
		if err != nil && (!errors.As(err, &te) || te.Reason == "") {
			t.Fatalf("an error that is not a *TokenError with a reason: %v", err)
		}
	})
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
