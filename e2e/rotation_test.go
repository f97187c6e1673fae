//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/kubeapply"
)

// applyTemplate renders manifests from e2e/testdata and applies them.
func applyTemplate(t *testing.T, name string, data any) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.ParseFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
		t.Fatal(err)
	}
	objs, err := kubeapply.Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	applier, err := kubeapply.New(cluster.cfg, "meshctl-e2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := applier.Apply(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
}

// putTrust writes the issuer Secret and the trust bundle to the control
// plane's namespace, and the bundle to the workloads' namespace (if any).
func putTrust(t *testing.T, appNS string, issuer *ca.KeyPair, anchors ...*ca.KeyPair) {
	t.Helper()
	ctx := context.Background()
	var roots []byte
	for _, a := range anchors {
		roots = append(roots, a.CertPEM()...)
	}
	if issuer != nil {
		key, err := issuer.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "mesh-issuer", Namespace: "meshctl"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: issuer.CertPEM(), corev1.TLSPrivateKeyKey: key},
		}
		if _, err := cluster.client.CoreV1().Secrets("meshctl").Update(ctx, sec, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = cluster.client.CoreV1().Secrets("meshctl").Create(ctx, sec, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(anchors) == 0 {
		return
	}
	for _, ns := range []string{"meshctl", appNS} {
		if ns == "" {
			continue
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mesh-trust-roots", Namespace: ns}, Data: map[string]string{"roots.pem": string(roots)}}
		if _, err := cluster.client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			if _, err := cluster.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// identityInfo is the part of a proxy's /identity the tests read.
type identityInfo struct {
	SPIFFEID          string   `json:"spiffe_id"`
	IssuerFingerprint string   `json:"issuer_fingerprint"`
	Roots             []string `json:"trust_root_fingerprints"`
}

// proxyIdentity reads a pod's proxy /identity through the API server.
func proxyIdentity(ctx context.Context, ns, pod string) (identityInfo, error) {
	var info identityInfo
	raw, err := cluster.client.CoreV1().Pods(ns).ProxyGet("http", pod, "4191", "/identity", nil).DoRaw(ctx)
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(raw, &info)
}

// loadErrors sums the errors the client's load generator reported after
// skipping the first `skip` reports, and returns how many there were.
func loadErrors(t *testing.T, ns, pod string, skip int) (errs, reports int) {
	t.Helper()
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "load"}).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(logs))
	for s.Scan() {
		var r struct {
			Requests int `json:"requests"`
			Errors   int `json:"errors"`
		}
		if json.Unmarshal(s.Bytes(), &r) != nil {
			continue
		}
		reports++
		if reports > skip {
			errs += r.Errors
		}
	}
	return errs, reports
}

// TestMeshedPodsGetCertificatesAndSurviveRotations deploys the controller and
// two meshed workloads; the proxies get their certificates from the
// controller (TokenReview of their projected tokens), traffic between them is
// mutual TLS, and it keeps flowing with zero failed requests across an issuer
// rotation and a trust-anchor rotation. Certificates live 90 s here so that
// proxies renew during the test.
func TestMeshedPodsGetCertificatesAndSurviveRotations(t *testing.T) {
	ctx := context.Background()
	anchor1 := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer1 := mustCA(t)(ca.NewIssuer(anchor1, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "90s", issuer1, anchor1)
	ns := newNamespace(t, "ident-mesh")
	putTrust(t, ns, nil, anchor1)

	applyTemplate(t, "workloads.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "web", 3*time.Minute)
	svc, err := cluster.client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	webPods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	webID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", ns)
	var eps []string
	for _, p := range webPods.Items {
		eps = append(eps, fmt.Sprintf(`{"addr": "%s:8080", "identity": %q}`, p.Status.PodIP, webID))
	}
	if _, err := cluster.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "endpoints"},
		Data:       map[string]string{"endpoints.json": fmt.Sprintf(`{"%s:80": [%s]}`, svc.Spec.ClusterIP, strings.Join(eps, ","))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyTemplate(t, "client.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "client", 3*time.Minute)
	clientPods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=client"})
	if err != nil {
		t.Fatal(err)
	}
	clientPod := clientPods.Items[0].Name
	allPods := []string{clientPod}
	for _, p := range webPods.Items {
		allPods = append(allPods, p.Name)
	}

	// The proxies hold certificates for their ServiceAccounts, and the
	// servers see the client by its identity.
	clientID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client", ns)
	for _, p := range allPods {
		info, err := proxyIdentity(ctx, ns, p)
		want := webID
		if p == clientPod {
			want = clientID
		}
		if err != nil || info.SPIFFEID != want {
			t.Fatalf("proxy of %s: identity %q (%v), want %s", p, info.SPIFFEID, err, want)
		}
	}
	eventually(t, "meshed requests from the client", time.Minute, func(ctx context.Context) error {
		total := 0.0
		for _, p := range webPods.Items {
			m, err := proxyMetrics(ctx, ns, p.Name)
			if err != nil {
				return err
			}
			total += sumMatching(m, "response_total{", "tls=true", "client_id="+clientID, "status_code=200")
		}
		if total < 20 {
			return fmt.Errorf("%v meshed responses", total)
		}
		return nil
	})
	_, baseline := loadErrors(t, ns, clientPod, 0)

	waitAll := func(what string, cond func(info identityInfo) bool) {
		t.Helper()
		start := time.Now()
		eventually(t, what, 4*time.Minute, func(ctx context.Context) error {
			for _, p := range allPods {
				info, err := proxyIdentity(ctx, ns, p)
				if err != nil {
					return err
				}
				if !cond(info) {
					return fmt.Errorf("%s not yet: %+v", p, info)
				}
			}
			return nil
		})
		t.Logf("%s: %s", what, time.Since(start).Round(time.Second))
	}

	// Issuer rotation under the same anchor.
	issuer1b := mustCA(t)(ca.NewIssuer(anchor1, "cluster.local", 12*time.Hour))
	putTrust(t, ns, issuer1b)
	waitAll("every proxy on the new issuer", func(i identityInfo) bool {
		return i.IssuerFingerprint == certs.Fingerprint(issuer1b.Cert)
	})

	// Trust-anchor rotation: both anchors, then the new issuer, then only the new anchor.
	anchor2 := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer2 := mustCA(t)(ca.NewIssuer(anchor2, "cluster.local", 12*time.Hour))
	putTrust(t, ns, nil, anchor1, anchor2)
	waitAll("every proxy trusting both anchors", func(i identityInfo) bool {
		return slices.Contains(i.Roots, certs.Fingerprint(anchor2.Cert)) && slices.Contains(i.Roots, certs.Fingerprint(anchor1.Cert))
	})
	putTrust(t, ns, issuer2)
	waitAll("every proxy on the new anchor's issuer", func(i identityInfo) bool {
		return i.IssuerFingerprint == certs.Fingerprint(issuer2.Cert)
	})
	putTrust(t, ns, nil, anchor2)
	waitAll("every proxy trusting only the new anchor", func(i identityInfo) bool {
		return len(i.Roots) == 1 && i.Roots[0] == certs.Fingerprint(anchor2.Cert)
	})

	// Let traffic run on the new anchor alone for a few reports, then count.
	_, now := loadErrors(t, ns, clientPod, 0)
	eventually(t, "three more load reports", time.Minute, func(context.Context) error {
		if _, n := loadErrors(t, ns, clientPod, 0); n < now+3 {
			return fmt.Errorf("%d reports", n)
		}
		return nil
	})
	errs, reports := loadErrors(t, ns, clientPod, baseline)
	if errs != 0 {
		t.Errorf("%d requests failed across the rotations (%d reports)", errs, reports-baseline)
	}
	t.Logf("%d load reports across the rotations, %d failed requests", reports-baseline, errs)
}

// mustCA fails the test when making a CA certificate failed.
func mustCA(t *testing.T) func(*ca.KeyPair, error) *ca.KeyPair {
	return func(kp *ca.KeyPair, err error) *ca.KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
}
