//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/controller"
	"github.com/meshctl/meshctl/controller/identitysvc"
	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// TestIdentityIssuanceAgainstTheRealAPIServer runs the issuance service
// against the local cluster's kube-apiserver (real TokenReview) and checks
// who gets a certificate and who does not.
func TestIdentityIssuanceAgainstTheRealAPIServer(t *testing.T) {
	ns := newNamespace(t, "ident")
	ctx := context.Background()
	for _, sa := range []string{"x", "y", "doomed"} {
		if _, err := cluster.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
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
	// The controller's client is configured for bursts of reviews (see
	// cmd/mesh-controller); the default 5 requests/s would dominate here.
	reviewCfg := rest.CopyConfig(cluster.cfg)
	reviewCfg.QPS, reviewCfg.Burst = controller.ClientQPS, controller.ClientBurst
	reviewClient, err := kubernetes.NewForConfig(reviewCfg)
	if err != nil {
		t.Fatal(err)
	}
	reviewer := &countingReviewer{r: identitysvc.TokenReviewer{Client: reviewClient}}
	// Every request here comes from this one address: lift the per-source limit.
	svc, err := identitysvc.New(identitysvc.Config{
		CA: authority, Reviewer: reviewer,
		TrustRoots: func() []byte { return anchor.CertPEM() }, Burst: 1000, RatePerSecond: 1000,
		SourceBurst: 1000, SourceRatePerSecond: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc)
	defer srv.Close()

	token := func(sa string, audiences []string, bound *authv1.BoundObjectReference) string {
		t.Helper()
		exp := int64(600)
		tr, err := cluster.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{
			Spec: authv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp, BoundObjectRef: bound},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	aud := []string{api.TokenAudience}
	xID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/x", ns)
	yID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/y", ns)

	// A pod to bind a token to, then delete.
	pod, err := cluster.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bound"},
		Spec: corev1.PodSpec{ServiceAccountName: "x", Containers: []corev1.Container{{
			Name: "main", Image: testappImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podToken := token("x", aud, &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})
	doomedToken := token("doomed", aud, nil)
	if err := cluster.client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.client.CoreV1().ServiceAccounts(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bound pod to be gone", time.Minute, func(ctx context.Context) error {
		if _, err := cluster.client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	xAccount, err := cluster.client.CoreV1().ServiceAccounts(ns).Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	key := newKey(t)
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	tampered := csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}})
	tampered = swapCSRKey(t, tampered)

	tests := []struct {
		name   string
		csr    string
		token  string
		status int
		reason string
	}{
		{"valid token and request", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), token("x", aud, nil), 200, ""},
		{"another ServiceAccount's ID", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(yID)}}), token("x", aud, nil), 403, "wrong_id"},
		{"extra DNS name", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}, DNSNames: []string{"x.example"}}), token("x", aud, nil), 400, "extra_san"},
		{"CA flag", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}}), token("x", aud, nil), 400, "ca_requested"},
		{"signed by another key", tampered, token("x", aud, nil), 400, "bad_signature"},
		{"wrong audience", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), token("x", []string{"https://kubernetes.default.svc"}, nil), 401, "token_audience"},
		{"expired token", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), mintToken(t, ns, "x", string(xAccount.UID), -time.Hour), 401, "token_expired"},
		{"deleted ServiceAccount", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/doomed", ns))}}), doomedToken, 401, "token_invalid"},
		{"deleted pod", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), podToken, 401, "token_invalid"},
		{"garbage token", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), "not.a.jwt", 401, "token_malformed"},
		{"malformed request", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", token("x", aud, nil), 400, "bad_csr"},
		{"oversized request", strings.Repeat("A", api.MaxCSRBytes+100), token("x", aud, nil), 400, "bad_csr"},
	}
	// The expired token is minted by hand with the cluster's signing key; a
	// fresh one minted the same way must work, or the test proves nothing.
	tests = append(tests, struct {
		name   string
		csr    string
		token  string
		status int
		reason string
	}{"hand-minted valid token (control)", csrPEMFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(xID)}}), mintToken(t, ns, "x", string(xAccount.UID), 30*time.Minute), 200, ""})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reviews := reviewer.n.Load()
			status, body := postCSR(t, srv.URL, tc.csr, tc.token)
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if status != tc.status || e.Reason != tc.reason {
				t.Fatalf("status %d reason %q (%s), want %d %q", status, e.Reason, e.Error, tc.status, tc.reason)
			}
			// What the local check refuses costs the API server nothing.
			if strings.HasPrefix(tc.reason, "token_") && tc.reason != "token_invalid" && reviewer.n.Load() != reviews {
				t.Errorf("a token refused locally (%s) still cost a TokenReview", tc.reason)
			}
			if status != 200 {
				return
			}
			var resp api.CertificateResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(resp.Certificate))
			leaf, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			id, err := spiffeid.FromCertificate(leaf)
			if err != nil || id.String() != xID || len(leaf.URIs) != 1 || len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 {
				t.Errorf("issued certificate names %v %v %v (%v)", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, err)
			}
		})
	}

	measureConcurrentIssuance(t, srv.URL, reviewer, func() string { return token("x", aud, nil) }, xID)
}

func postCSR(t *testing.T, base, csr, token string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(api.CertificateRequest{CSR: csr, Token: token})
	status, b := postBody(t, http.DefaultClient, base, body)
	if status == 0 {
		t.FailNow()
	}
	return status, b
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Error(err)
	}
	return k
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func csrPEMFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Error(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// swapCSRKey replaces the public key a PEM request carries, keeping the
// signature made with the original key.
func swapCSRKey(t *testing.T, csrPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	other, err := x509.MarshalPKIXPublicKey(newKey(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Replace(block.Bytes, csr.RawSubjectPublicKeyInfo, other, 1)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: raw}))
}

// mintToken signs a ServiceAccount token with the local cluster's signing
// key, expiring after validFor (negative: already expired). The TokenRequest
// API will not make one that short-lived.
func mintToken(t *testing.T, ns, sa, uid string, validFor time.Duration) string {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join("/var/lib/meshctl-cluster/pki", "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemutil.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local",
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"aud": []string{api.TokenAudience},
		"iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(validFor).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": uid}},
	}
	tok, err := jose.Signed(signer).Claims(claims).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
