package identitysvc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// fuzzLifetime is the certificate lifetime FuzzIssue configures: shorter
// than the issuer's, so the issued certificates must last exactly this
// (plus the CA's backdating).
const fuzzLifetime = time.Hour

// vouchingReviewer is a stand-in for the API server that vouches for one
// user, whatever the token: the fuzz target tests what the handler makes of
// the answer, not what the API server decides.
type vouchingReviewer struct {
	user  atomic.Pointer[string] // the user every review says
	calls atomic.Int64
}

// Review implements Reviewer.
func (rv *vouchingReviewer) Review(ctx context.Context, token, audience string) (string, error) {
	rv.calls.Add(1)
	return *rv.user.Load(), nil
}

// issueFixture is a Service with limits out of the way, its reviewer, the
// roots and issuer to verify against, and keys to sign requests with.
type issueFixture struct {
	s        *Service
	rv       *vouchingReviewer
	roots    *x509.CertPool
	issuer   *x509.Certificate
	backdate time.Duration
	keys     []crypto.Signer // P-256, Ed25519, RSA-1024 (weak), P-224 (weak)
}

// newIssueFixture builds an issueFixture; tb is a testing.F or testing.T.
func newIssueFixture(tb testing.TB) *issueFixture {
	tb.Helper()
	anchor, err := ca.NewTrustAnchor("cluster.local", 48*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := ca.New(issuer)
	if err != nil {
		tb.Fatal(err)
	}
	rv := &vouchingReviewer{}
	user := "system:serviceaccount:shop:web"
	rv.user.Store(&user)
	s, err := New(Config{
		CA: c, Reviewer: rv, TrustRoots: func() []byte { return anchor.CertPEM() }, Lifetime: fuzzLifetime,
		RatePerSecond: 1e9, Burst: 1 << 30, SourceRatePerSecond: 1e9, SourceBurst: 1 << 30,
	})
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor.Cert)
	fx := &issueFixture{s: s, rv: rv, roots: roots, issuer: issuer.Cert, backdate: c.Backdate}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		tb.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	fx.keys = []crypto.Signer{p256, ed, weakRSA, p224}
	return fx
}

// Flags of FuzzIssue's request.
const (
	askCA      = 1 << iota // a basic constraints extension with CA:true
	askEmail               // an email SAN
	askIP                  // an IP SAN
	useGet                 // GET instead of POST
	keyShift   = 4         // bits 4–5 choose the key
	keyBits    = 3
	goodKeyMax = 1 // keys 0 and 1 are acceptable
)

// csrFor makes a PEM certificate request, signed with key, for the
// newline-separated URIs and DNS names, with what flags add.
func csrFor(key crypto.Signer, uris, dns string, flags uint8) (string, *x509.CertificateRequest, bool) {
	tmpl := &x509.CertificateRequest{}
	for _, u := range strings.Split(uris, "\n") {
		if p, err := url.Parse(u); err == nil && u != "" {
			tmpl.URIs = append(tmpl.URIs, p)
		}
	}
	for _, d := range strings.Split(dns, "\n") {
		if d != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, d)
		}
	}
	if flags&askEmail != 0 {
		tmpl.EmailAddresses = []string{"web@shop.example"}
	}
	if flags&askIP != 0 {
		tmpl.IPAddresses = []net.IP{net.IPv4(10, 244, 0, 10)}
	}
	if flags&askCA != 0 {
		val, _ := asn1.Marshal(struct {
			IsCA bool `asn1:"optional"`
		}{true})
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: val}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", nil, false
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return "", nil, false
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), csr, true
}

// vouchedID is the SPIFFE ID a review's user stands for, independently of
// the handler's idOf; false when the user is no ServiceAccount.
func vouchedID(user string) (string, bool) {
	parts := strings.Split(user, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return "", false
	}
	id, err := spiffeid.New("cluster.local", parts[2], parts[3])
	if err != nil {
		return "", false
	}
	return id.String(), true
}

// FuzzIssue drives the issuance handler with a fuzzed request body (a
// template in which $CSR and $TOKEN become a certificate request built
// from fuzzed SANs and flags, and a fresh token), method and key, and a
// fuzzed user the token review vouches for. Oracle (see checkIssue): an
// issued certificate is for exactly the vouched SPIFFE ID and nothing else,
// no CA, for the request's key, verifies to the trust anchor through the
// issuer and lasts the configured lifetime; only a request that asks for
// exactly that ID with an acceptable key is issued, and such a request is;
// every refusal is a 4xx with a JSON error; a method other than POST is 405,
// and a POST body over the limit 413.
func FuzzIssue(f *testing.F) {
	const web = "spiffe://cluster.local/ns/shop/sa/web"
	const webUser = "system:serviceaccount:shop:web"
	tmpl := `{"csr":"$CSR","token":"$TOKEN"}`
	for _, seed := range []struct {
		body      string
		uris, dns string
		flags     uint8
		user      string
	}{
		{tmpl, web, "", 0, webUser},                                               // issued
		{tmpl, web, "", 1 << keyShift, webUser},                                   // Ed25519: issued
		{tmpl, web, "", 0, "system:serviceaccount:shop:other"},                    // the review says another SA
		{tmpl, web, "", 0, "alice"},                                               // not a ServiceAccount
		{tmpl, web, "", 0, "system:serviceaccount:shop:web:x"},                    // a user with one part too many
		{tmpl, web + "\nspiffe://cluster.local/ns/shop/sa/admin", "", 0, webUser}, // extra URI SAN
		{tmpl, "spiffe://cluster.local/ns/shop/sa/admin", "", 0, webUser},         // wrong ID
		{tmpl, "spiffe://other.domain/ns/shop/sa/web", "", 0, webUser},            // wrong trust domain
		{tmpl, "SPIFFE://cluster.local/ns/shop/sa/web", "", 0, webUser},           // case
		{tmpl, web + "/", "", 0, webUser},                                         // trailing slash
		{tmpl, web, "web.shop.svc.cluster.local", 0, webUser},                     // DNS SAN
		{tmpl, web, "", askEmail, webUser},                                        // email SAN
		{tmpl, web, "", askIP, webUser},                                           // IP SAN
		{tmpl, web, "", askCA, webUser},                                           // CA:true
		{tmpl, web, "", 2 << keyShift, webUser},                                   // RSA-1024
		{tmpl, web, "", 3 << keyShift, webUser},                                   // P-224
		{tmpl, "", "", 0, webUser},                                                // no SAN
		{tmpl, web, "", useGet, webUser},                                          // GET
		{`{"csr":"$CSR"}`, web, "", 0, webUser},                                   // no token
		{`{"csr":"$CSR","token":"$TOKEN","csr":"garbage"}`, web, "", 0, webUser},  // duplicate key
		{`{"csr":"$CSR$CSR","token":"$TOKEN"}`, web, "", 0, webUser},              // two requests
		{`[`, web, "", 0, webUser},
		{`{"csr":"$CSR","token":"$TOKEN"}` + strings.Repeat(" ", maxBodyBytes), web, "", 0, webUser}, // over the limit
		{`{"csr":"` + strings.Repeat("A", maxBodyBytes) + `","token":"$TOKEN"}`, web, "", 0, webUser},
	} {
		f.Add([]byte(seed.body), seed.uris, seed.dns, seed.flags, seed.user)
	}
	fx := newIssueFixture(f)
	f.Fuzz(func(t *testing.T, body []byte, uris, dns string, flags uint8, user string) {
		key := int(flags>>keyShift) & keyBits
		csrPEM, csr, ok := csrFor(fx.keys[key], uris, dns, flags)
		if !ok {
			return
		}
		csrJSON, _ := json.Marshal(csrPEM)
		tok := token("system:serviceaccount:shop:web")
		body = bytes.ReplaceAll(body, []byte("$CSR"), csrJSON[1:len(csrJSON)-1])
		body = bytes.ReplaceAll(body, []byte("$TOKEN"), []byte(tok))
		fx.rv.user.Store(&user)
		method := http.MethodPost
		if flags&useGet != 0 {
			method = http.MethodGet
		}
		req := httptest.NewRequest(method, api.CertificatePath, bytes.NewReader(body))
		req.RemoteAddr = "192.0.2.1:40000"
		rec := httptest.NewRecorder()
		callsBefore := fx.rv.calls.Load()
		fx.s.ServeHTTP(rec, req)
		reviewed := fx.rv.calls.Load() > callsBefore

		want, vouched := vouchedID(user)
		// Whether the handler must issue: the exact template, and a request
		// for exactly the vouched ID with an acceptable key and nothing else.
		exact := method == http.MethodPost && vouched && key <= goodKeyMax && flags&(askCA|askEmail|askIP) == 0 &&
			len(csr.DNSNames) == 0 && len(csr.URIs) == 1 && csr.URIs[0].String() == want &&
			string(body) == `{"csr":`+string(csrJSON)+`,"token":"`+tok+`"}`
		checkIssue(t, fx, rec, issueCase{body: body, post: method == http.MethodPost, csr: csr, want: want, vouched: vouched, goodKey: key <= goodKeyMax, reviewed: reviewed, mustIssue: exact})
	})
}

// issueCase is what checkIssue knows of one request.
type issueCase struct {
	body      []byte
	post      bool // the method is POST (any other is 405, whatever the body)
	csr       *x509.CertificateRequest
	want      string // the SPIFFE ID the review vouched for
	vouched   bool   // the review's user is a ServiceAccount
	goodKey   bool
	reviewed  bool // the token was reviewed
	mustIssue bool
}

// checkIssue is FuzzIssue's oracle for one answer.
func checkIssue(t *testing.T, fx *issueFixture, rec *httptest.ResponseRecorder, c issueCase) {
	t.Helper()
	if !c.post && rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("a request that is not a POST: status %d, want 405", rec.Code)
	}
	if c.post && len(c.body) > maxBodyBytes && rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body of %d bytes (limit %d): status %d, want 413", len(c.body), maxBodyBytes, rec.Code)
	}
	if rec.Code != http.StatusOK {
		var e api.Error
		if rec.Code < 400 || rec.Code > 499 {
			t.Fatalf("a refusal with status %d: %s", rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" || e.Reason == "" {
			t.Fatalf("status %d without a JSON error: %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		if c.mustIssue {
			t.Fatalf("a valid request for %s, vouched for, was refused: %d %s", c.want, rec.Code, rec.Body)
		}
		return
	}
	// Issued.
	if !c.vouched || !c.goodKey || !c.reviewed {
		t.Fatalf("issued, but the review vouched for no ServiceAccount (%v), the key is unacceptable (%v) or no review was made (%v)", !c.vouched, !c.goodKey, !c.reviewed)
	}
	var resp api.CertificateResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("issued, but the answer is no CertificateResponse: %v", err)
	}
	var chain []*x509.Certificate
	for rest := []byte(resp.Certificate); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	if len(chain) < 2 || !chain[1].Equal(fx.issuer) {
		t.Fatalf("issued a chain of %d certificates, not the leaf and the issuer", len(chain))
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != c.want {
		t.Fatalf("issued for %v; the review vouched for %s", leaf.URIs, c.want)
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) > 0 {
		t.Fatalf("issued with extra SANs: %v %v %v", leaf.DNSNames, leaf.EmailAddresses, leaf.IPAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatal("issued a CA certificate")
	}
	if len(c.csr.URIs) != 1 || c.csr.URIs[0].String() != c.want || len(c.csr.DNSNames)+len(c.csr.EmailAddresses)+len(c.csr.IPAddresses) > 0 {
		t.Fatalf("issued for a request of URIs %v, DNS %v, email %v, IP %v", c.csr.URIs, c.csr.DNSNames, c.csr.EmailAddresses, c.csr.IPAddresses)
	}
	for _, ext := range c.csr.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 19}) {
			t.Fatal("issued for a request asking for basic constraints")
		}
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(c.csr.PublicKey) {
		t.Fatal("issued for another key than the request's")
	}
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: fx.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != fuzzLifetime+fx.backdate {
		t.Fatalf("issued for %s, want %s (and %s backdated)", got, fuzzLifetime, fx.backdate)
	}
}

// TestIssuanceBodyTooLarge reaches the 413 branch: a request body over
// the limit, valid JSON otherwise, is refused before anything else with a
// JSON error and no TokenReview.
func TestIssuanceBodyTooLarge(t *testing.T) {
	fx := newIssueFixture(t)
	csrPEM, _, _ := csrFor(fx.keys[0], "spiffe://cluster.local/ns/shop/sa/web", "", 0)
	b, _ := json.Marshal(api.CertificateRequest{CSR: csrPEM, Token: token("system:serviceaccount:shop:web")})
	b = append(b[:len(b)-1], append(bytes.Repeat([]byte(" "), maxBodyBytes+1-len(b)), '}')...)
	if len(b) != maxBodyBytes+1 {
		t.Fatalf("body of %d bytes, want %d", len(b), maxBodyBytes+1)
	}
	req := httptest.NewRequest(http.MethodPost, api.CertificatePath, bytes.NewReader(b))
	req.RemoteAddr = "192.0.2.1:40000"
	rec := httptest.NewRecorder()
	fx.s.ServeHTTP(rec, req)
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); rec.Code != http.StatusRequestEntityTooLarge || err != nil || e.Reason != "too_large" || e.Error == "" {
		t.Errorf("status %d body %q, want 413 with a JSON error of reason too_large", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if n := fx.rv.calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews for a body over the limit, want 0", n)
	}
}
