package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// rotationCluster is an API server with the control plane's trust bundle
// and issuer, meshed pods, and the admin API in front of their proxies.
// Like real proxies, these take their trust roots from the controller with
// each certificate: a proxy's bundle and issuer change only when it is asked
// to renew, whatever the namespaces' copies of the bundle say.
type rotationCluster struct {
	mu      sync.Mutex // guards the fields below
	roots   string     // the ConfigMap's roots.pem
	issuer  string     // the Secret's tls.crt
	proxies map[string]*proxyIdentity
	renews  int
}

func (rc *rotationCluster) fingerprints(rootsPEM string) []string {
	_, rs, _ := certs.ParseRoots([]byte(rootsPEM))
	return fingerprints(rs)
}

func fingerprints(cs []*x509.Certificate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = certs.Fingerprint(c)
	}
	return out
}

func (rc *rotationCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	write := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	path := r.URL.Path
	switch {
	case path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		write(authorizationv1.SelfSubjectAccessReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"},
			Status:   authorizationv1.SubjectAccessReviewStatus{Allowed: true},
		})
	case path == "/api/v1/namespaces/kube-system":
		write(corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "uid-rotation"},
		})
	case path == "/api/v1/namespaces/meshctl/configmaps/"+meshnames.TrustRootsConfigMap:
		if r.Method == http.MethodPut {
			var cm corev1.ConfigMap
			_ = json.NewDecoder(r.Body).Decode(&cm)
			rc.roots = cm.Data[meshnames.RootsKey]
		}
		write(corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "meshctl", Name: meshnames.TrustRootsConfigMap},
			Data:       map[string]string{meshnames.RootsKey: rc.roots},
		})
	case path == "/api/v1/namespaces/meshctl/secrets/"+meshnames.IssuerSecret:
		if r.Method == http.MethodPut {
			var s corev1.Secret
			_ = json.NewDecoder(r.Body).Decode(&s)
			rc.issuer = string(s.Data[corev1.TLSCertKey])
		}
		write(corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "meshctl", Name: meshnames.IssuerSecret},
			Data:       map[string][]byte{corev1.TLSCertKey: []byte(rc.issuer)},
		})
	case path == "/api/v1/pods":
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
		for name := range rc.proxies {
			list.Items = append(list.Items, corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			})
		}
		write(list)
	case strings.HasPrefix(path, "/apis/admin.meshctl.io/v1alpha1/namespaces/shop/pods/"):
		name, sub, _ := strings.Cut(strings.TrimPrefix(path, "/apis/admin.meshctl.io/v1alpha1/namespaces/shop/pods/"), "/")
		p := rc.proxies[name]
		switch {
		case p == nil:
			w.WriteHeader(http.StatusNotFound)
		case sub == "identity" && r.Method == http.MethodGet:
			write(p)
		case sub == "renew" && r.Method == http.MethodPost:
			// The controller issues from the Secret's issuer and sends
			// the ConfigMap's bundle with the certificate.
			rc.renews++
			p.TrustRootFingerprints = rc.fingerprints(rc.roots)
			if c := rc.fingerprints(rc.issuer); len(c) == 1 {
				p.IssuerFingerprint = c[0]
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		write(metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound})
	}
}

// TestRotateTrustAnchorHasEveryProxyRenewAtEachStage: proxies take their
// trust roots from the controller, not from the mounted copy of the bundle,
// so waiting for the kubelet to deliver the new bundle would wait forever;
// every stage asks each proxy to renew, and the rotation completes.
func TestRotateTrustAnchorHasEveryProxyRenewAtEachStage(t *testing.T) {
	anchor, err := ca.NewTrustAnchor("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rotationCluster{roots: string(anchor.CertPEM()), issuer: string(issuer.CertPEM()), proxies: map[string]*proxyIdentity{}}
	for _, name := range []string{"web-1", "web-2"} {
		rc.proxies[name] = &proxyIdentity{
			SPIFFEID:              "spiffe://cluster.local/ns/shop/sa/web",
			IssuerFingerprint:     certs.Fingerprint(issuer.Cert),
			TrustRootFingerprints: []string{certs.Fingerprint(anchor.Cert)},
		}
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	o := &rotateOptions{anchorFile: filepath.Join(t.TempDir(), "trust-anchor.pem"), timeout: 20 * time.Second}
	if err := rotateTrustAnchor(t.Context(), o, client, io.Discard); err != nil {
		t.Fatalf("rotate-trust-anchor: %v", err)
	}
	next, err := loadAnchor(o.anchorFile)
	if err != nil {
		t.Fatal(err)
	}
	// The new file is marked as this cluster's: install reuses it after an
	// uninstall.
	if _, err := reusableAnchor(o.anchorFile, "uid-rotation", "cluster.local"); err != nil {
		t.Errorf("the rotated anchor file is not reusable by install: %v", err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for name, p := range rc.proxies {
		if len(p.TrustRootFingerprints) != 1 || p.TrustRootFingerprints[0] != certs.Fingerprint(next.Cert) {
			t.Errorf("%s trusts %v, want only the new anchor", name, p.TrustRootFingerprints)
		}
	}
	if rc.renews < 3*len(rc.proxies) {
		t.Errorf("%d renewals asked, want one per proxy at each of the 3 stages at least", rc.renews)
	}
}

// TestKeepAnchorNeverReplacesAKey rotates the anchor file three times: each
// earlier key stays, under <file>.previous, then .previous.2, .previous.3,
// and none is overwritten.
func TestKeepAnchorNeverReplacesAKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust-anchor.pem")
	var written [][]byte
	for i := range 4 {
		anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := keepAnchor(path, anchor, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]string{0: "", 1: path + ".previous", 2: path + ".previous.2", 3: path + ".previous.3"}[i]
		if kept != want {
			t.Errorf("rotation %d kept the previous file as %q, want %q", i, kept, want)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, data)
	}
	for i, name := range []string{path + ".previous", path + ".previous.2", path + ".previous.3"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, written[i]) {
			t.Errorf("%s does not hold the key of rotation %d", name, i)
		}
	}
}

// TestRotateIssuerWithoutTheKeyPointsToTheWayOut: the anchor's key file
// missing, rotate-issuer says what it needs and that rotate-trust-anchor
// works without it.
func TestRotateIssuerWithoutTheKeyPointsToTheWayOut(t *testing.T) {
	o := &rotateOptions{anchorFile: filepath.Join(t.TempDir(), "lost.pem")}
	o.kube.use(&globalOptions{kubeconfig: nowhere(t)})
	var out, errOut bytes.Buffer
	err := runRotateIssuer(context.Background(), o, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "lost.pem") || !strings.Contains(err.Error(), "meshctl identity rotate-trust-anchor") {
		t.Errorf("rotate-issuer without the key file: %v", err)
	}
	for _, path := range [][]string{{"identity"}, {"identity", "rotate-issuer"}} {
		cmd, _, err := NewRootCommand().Find(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cmd.Long, "rotate-trust-anchor") || !strings.Contains(cmd.Long, "lost") {
			t.Errorf("meshctl %s --help does not say rotate-trust-anchor is the way out when the key is lost:\n%s", cmd.CommandPath(), cmd.Long)
		}
	}
}
