//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/identity/ca"
)

// TestObservabilityWithFiftyPodsAndWithoutPermission: stat, top and edges
// answer for a workload of 50 meshed pods; a user who may not use
// pods/proxy gets a message naming each pod and the cause; targets that do
// not exist and pods without a proxy are refused clearly.
func TestObservabilityWithFiftyPodsAndWithoutPermission(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "many")
	applyTemplate(t, "accuracy.yaml", map[string]string{"Namespace": ns})
	scale(t, ns, "web", 50)
	waitReady(t, ns, "web", 8*time.Minute)

	out, err := meshctl(t, false, "stat", "deploy", "web", "-n", ns, "-t", "3s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Meshed int      `json:"meshed"`
		Pods   int      `json:"pods"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Meshed != 50 || rows[0].Pods != 50 || len(rows[0].Errors) != 0 {
		t.Errorf("stat over 50 pods: %+v (%v)", rows, err)
	}
	// stat -w prints a window's figures again and again, and Ctrl-C ends
	// it cleanly.
	watch := exec.Command(filepath.Join(cluster.local.RepoDir, "bin", "meshctl"), "stat", "deploy", "web", "-n", ns, "-w", "-t", "1s", "-o", "json", "--kubeconfig", cluster.local.Kubeconfig())
	var watched lockedBuffer
	watch.Stdout = &watched
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stat -w to print three windows", time.Minute, func(context.Context) error {
		if n := strings.Count(watched.String(), `"meshed": 50`); n < 3 {
			return fmt.Errorf("%d windows so far", n)
		}
		return nil
	})
	_ = watch.Process.Signal(os.Interrupt)
	if err := watch.Wait(); err != nil {
		t.Errorf("stat -w stopped by Ctrl-C: %v, want exit status 0", err)
	}
	start := time.Now()
	meshctl(t, false, "top", "deploy/web", "-n", ns, "--once", "--duration", "3s", "-o", "json")
	t.Logf("top --once over 50 pods' tap streams: %s", time.Since(start).Round(100*time.Millisecond))
	meshctl(t, false, "edges", "deploy", "-n", ns)

	// Bad input.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stat", "deploy", "nope", "-n", ns}, `deployment "nope" not found`},
		{[]string{"top", "deploy/nope", "-n", ns, "--once"}, `deployment "nope" not found`},
		{[]string{"identity", "show", "pod/" + corednsPod(t), "-n", "kube-system"}, "has no proxy"},
		{[]string{"stat", "widget", "-n", ns}, `unknown resource type "widget"`},
	} {
		_, err := meshctl(t, true, tc.args...)
		if err == nil {
			t.Errorf("meshctl %s succeeded", strings.Join(tc.args, " "))
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) {
			t.Errorf("meshctl %s: %q, want it to say %q", strings.Join(tc.args, " "), msg, tc.want)
		}
	}

	// A user who may read pods and Deployments but not use pods/proxy.
	viewer := viewerKubeconfig(t, ns)
	bin := filepath.Join(cluster.local.RepoDir, "bin", "meshctl")
	res, err := exec.Command(bin, "stat", "deploy", "web", "-n", ns, "-t", "1s", "--kubeconfig", viewer).CombinedOutput()
	t.Logf("stat without pods/proxy permission (%v):\n%s", err, firstLines(string(res), 6))
	if n := strings.Count(string(res), "you may not use pods/proxy"); n != 50 {
		t.Errorf("stat without pods/proxy permission named %d pods with the cause, want 50", n)
	}
}

func corednsPod(t *testing.T) string {
	t.Helper()
	pods, err := cluster.client.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("kube-system pods: %v", err)
	}
	return pods.Items[0].Name
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// viewerKubeconfig is a kubeconfig for a ServiceAccount that may get and
// list pods and Deployments in ns, and nothing else.
func viewerKubeconfig(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cluster.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "viewer", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tok, err := cluster.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "viewer", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(cluster.local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.ClientCertificateData, ai.ClientKeyData, ai.ClientCertificate, ai.ClientKey = nil, nil, "", ""
		ai.Token = tok.Status.Token
	}
	path := filepath.Join(t.TempDir(), "viewer.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer is a buffer a command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
