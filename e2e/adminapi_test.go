//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// TestAdminAPIOnTheCluster: the proxies' sensitive endpoints are reached
// through the aggregated API admin.meshctl.io and the user's RBAC, never
// from the node in plaintext:
//   - the admin taps and reads a pod's identity with meshctl;
//   - a ServiceAccount without RBAC for admin.meshctl.io is refused with
//     the ClusterRole to ask for; bound to meshctl-admin-viewer it reads but
//     may not renew;
//   - the controller believes no X-Remote-User header without the API
//     server's front-proxy certificate (401), and with it still asks the API
//     server's RBAC (SubjectAccessReview) about the named user;
//   - a hostNetwork pod on the node gets 403 from a meshed pod's /tap and
//     /identity in plaintext, and reads its /metrics.
func TestAdminAPIOnTheCluster(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "admin")
	applyTemplate(t, "meshed.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "web", 3*time.Minute)
	applyTemplate(t, "meshed-client.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "client", 3*time.Minute)
	eventually(t, "APIService "+meshnames.AdminAPIServiceName+" available", 2*time.Minute, func(ctx context.Context) error {
		ok, why, err := adminclient.Available(ctx, cluster.client.Discovery().RESTClient())
		if err == nil && !ok {
			err = fmt.Errorf("%s", why)
		}
		return err
	})
	web := podsOf(t, ns, "app=web")[0]
	webID := "spiffe://cluster.local/ns/" + ns + "/sa/web"
	clientID := "spiffe://cluster.local/ns/" + ns + "/sa/client"

	t.Run("the admin taps and reads identities through the APIService", func(t *testing.T) {
		out, _ := meshctl(t, false, "identity", "show", "pod/"+web, "-n", ns, "-o", "json")
		if !strings.Contains(out, webID) {
			t.Errorf("identity show: %s, want %s", out, webID)
		}
		out, _ = meshctl(t, false, "top", "deploy/web", "-n", ns, "--once", "--duration", "5s", "-o", "json")
		if !strings.Contains(out, `"source": "`+ns+`/client"`) {
			t.Errorf("top saw no request from %s/client:\n%s", ns, out)
		}
		out, stderr := meshctlWith(t, cluster.local.Kubeconfig(), 8*time.Second, "tap", "deploy/web", "-n", ns, "-o", "wide")
		if !strings.Contains(out, "src="+clientID) || !strings.Contains(out, "src_pod="+ns+"/client-") || !strings.Contains(out, "dst_pod="+ns+"/"+web) {
			t.Errorf("tap -o wide showed no request from %s (pod %s/client-…) to pod %s/%s:\n%s\n%s", clientID, ns, ns, web, out, stderr)
		}
		out, stderr = meshctlWith(t, cluster.local.Kubeconfig(), 8*time.Second, "tap", "deploy/client", "-n", ns, "-o", "yaml")
		if !strings.Contains(out, "---\n") || !strings.Contains(out, "type: end") || !strings.Contains(out, "server_id: "+webID) {
			t.Errorf("tap deploy/client -o yaml: want YAML documents, ends proving %s:\n%s\n%s", webID, out, stderr)
		}
		if _, err := meshctl(t, false, "check", "--proxy", "-n", ns); err != nil {
			t.Error(err)
		}
		if _, err := meshctl(t, true, "identity", "show", "pod/no-such-pod", "-n", ns); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("identity show of a pod that does not exist: %v, want exit status 3 (not found)", err)
		}
	})

	t.Run("a tap outlives the API server's request timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
		defer cancel()
		stream, err := adminclient.Request(cluster.client.CoreV1().RESTClient(), ns, web, meshnames.AdminTap).Param("max_rps", "1").Stream(ctx)
		if err != nil {
			t.Fatal(adminclient.Explain(err, meshnames.AdminTap))
		}
		defer stream.Close()
		start := time.Now()
		_, err = io.Copy(io.Discard, stream)
		if took := time.Since(start); took < 70*time.Second {
			t.Errorf("the tap ended after %s (%v), before the test did: the API server's request timeout (1 min) cut it", took.Round(time.Second), err)
		}
	})

	t.Run("RBAC for admin.meshctl.io decides who may", func(t *testing.T) {
		kubeconfig, restCfg := serviceAccountKubeconfig(t, ns, "auditor")
		_, stderr := meshctlWith(t, kubeconfig, time.Minute, "identity", "show", "pod/"+web, "-n", ns)
		if !strings.Contains(stderr, meshnames.AdminViewerClusterRole) {
			t.Errorf("identity show without RBAC does not name %s:\n%s", meshnames.AdminViewerClusterRole, stderr)
		}
		_, stderr = meshctlWith(t, kubeconfig, 20*time.Second, "tap", "deploy/web", "-n", ns)
		if !strings.Contains(stderr, meshnames.AdminViewerClusterRole) || !strings.Contains(stderr, "no pod could be tapped") {
			t.Errorf("tap without RBAC does not name %s:\n%s", meshnames.AdminViewerClusterRole, stderr)
		}
		// The ServiceAccount may read the pods (resolving deploy/web): only
		// admin.meshctl.io is missing.
		bind(t, ns, "auditor", meshnames.AdminViewerClusterRole)
		eventually(t, "the viewer role to take effect", 30*time.Second, func(ctx context.Context) error {
			_, stderr := meshctlWith(t, kubeconfig, time.Minute, "identity", "show", "pod/"+web, "-n", ns)
			if strings.Contains(stderr, "Error") {
				return fmt.Errorf("%s", stderr)
			}
			return nil
		})
		sa, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = adminclient.Do(context.Background(), sa.CoreV1().RESTClient(), ns, web, meshnames.AdminRenew)
		if err = adminclient.Explain(err, meshnames.AdminRenew); err == nil || !strings.Contains(err.Error(), meshnames.AdminOperatorClusterRole) {
			t.Errorf("a viewer renewing: %v, want a refusal naming %s", err, meshnames.AdminOperatorClusterRole)
		}
	})

	t.Run("the README's bindings are enough for every read command", func(t *testing.T) {
		kubeconfig := readmeUser(t, ns, "alice")
		client := podsOf(t, ns, "app=client")[0]
		commands := [][]string{
			{"stat", "deploy/web", "-t", "1s"},
			{"edges", "deploy", "-t", "0"},
			{"authz", "deploy/web", "-t", "0", "-o", "json"},
			{"routes", "svc/web", "-t", "1s", "-o", "json"},
			{"top", "deploy/web", "--once", "--duration", "3s", "-o", "json"},
			{"identity", "show", "pod/" + web},
			{"diagnostics", "endpoints", "pod/" + client},
			{"diagnostics", "policy", "pod/" + web},
			{"diagnostics", "proxy-metrics", "pod/" + web},
			{"check", "--proxy", "-n", ns, "--wait=false"},
		}
		eventually(t, "the bindings to take effect", 30*time.Second, func(ctx context.Context) error {
			_, stderr, err := meshctlAs(t, kubeconfig, time.Minute, "identity", "show", "pod/"+web)
			if err != nil {
				return fmt.Errorf("%v: %s", err, stderr)
			}
			return nil
		})
		for _, args := range commands {
			out, stderr, err := meshctlAs(t, kubeconfig, time.Minute, args...)
			if err != nil || strings.Contains(strings.ToLower(stderr), "forbidden") {
				t.Errorf("meshctl %s as a user bound as the README says: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			if slices.Contains(args, "json") && !json.Valid([]byte(out)) {
				t.Errorf("meshctl %s: not JSON:\n%s", strings.Join(args, " "), out)
			}
			if args[0] == "authz" && (!strings.Contains(out, `"policy": "all-unauthenticated"`) || !strings.Contains(out, "the proxies' decisions") || strings.Contains(out, `"default": "unknown"`)) {
				t.Errorf("authz by a user who may not read the controller's Deployment: want the default the proxies decided by, said so, not guessed:\n%s", out)
			}
			if args[0] == "check" && (!strings.Contains(out, "? the control plane namespace exists") || !strings.Contains(out, "Status check results are ‼ (")) {
				t.Errorf("check --proxy by a user who may not read the control plane: want its checks marked ?, not failed:\n%s", out)
			}
		}
		// tap runs until interrupted: its requests are the proof.
		out, stderr := meshctlWith(t, kubeconfig, 8*time.Second, "tap", "deploy/web")
		if !strings.Contains(out, "src="+clientID) || strings.Contains(strings.ToLower(stderr), "forbidden") {
			t.Errorf("tap as a user bound as the README says: no request from %s:\n%s\n%s", clientID, out, stderr)
		}
	})

	t.Run("the controller trusts only the front proxy, and asks the API server about the user", func(t *testing.T) {
		ctx := context.Background()
		url := "https://" + net.JoinHostPort(controllerPodIP(t), fmt.Sprint(meshnames.AdminAPIPort)) + adminclient.Path(ns, web, meshnames.AdminIdentity)
		frontCert, frontKey := cluster.local.FrontProxyClientFiles()
		front, err := tls.LoadX509KeyPair(frontCert, frontKey)
		if err != nil {
			t.Fatal(err)
		}
		admin, err := tls.X509KeyPair(cluster.cfg.TLSClientConfig.CertData, cluster.cfg.TLSClientConfig.KeyData)
		if err != nil {
			t.Fatal(err)
		}
		masters := http.Header{"X-Remote-User": {"system:admin"}, "X-Remote-Group": {"system:masters"}}
		for _, c := range []struct {
			name   string
			cert   *tls.Certificate
			header http.Header
			want   int
		}{
			{"no client certificate, system:masters claimed", nil, masters, http.StatusUnauthorized},
			{"the cluster admin's own certificate, system:masters claimed", &admin, masters, http.StatusUnauthorized},
			{"the front proxy, for a user with no RBAC", &front, http.Header{"X-Remote-User": {"nobody-" + ns}, "X-Remote-Group": {"system:authenticated"}}, http.StatusForbidden},
			{"the front proxy, for a member of system:masters", &front, masters, http.StatusOK},
		} {
			code, body := getController(ctx, t, url, c.cert, c.header)
			if code != c.want {
				t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
			}
			if c.want == http.StatusOK && !strings.Contains(body, webID) {
				t.Errorf("%s: %s, want the pod's identity", c.name, body)
			}
		}
	})

	t.Run("a hostNetwork pod on the node cannot read /tap or /identity in plaintext", func(t *testing.T) {
		ip := podIP(t, ns, web)
		node := newNamespace(t, "node")
		for _, path := range []string{"/tap", "/identity"} {
			out := runOnNode(t, node, "node-get"+strings.TrimPrefix(path, "/"), []string{"check", "--get", "http://" + ip + ":4191" + path, "--requests", "1"}, true)
			if !strings.Contains(out, "403") {
				t.Errorf("a hostNetwork pod's GET %s: %s, want 403", path, out)
			}
		}
		runOnNode(t, node, "node-metrics", []string{"check", "--get", "http://" + ip + ":4191/metrics", "--requests", "1", "--any-body"}, false)
	})
}

// meshctlWith runs the CLI with kubeconfig for at most d (then interrupts
// it: tap runs until then) and returns its standard output and error.
func meshctlWith(t *testing.T, kubeconfig string, d time.Duration, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, _ = meshctlAs(t, kubeconfig, d, args...)
	return stdout, stderr
}

// meshctlAs is meshctlWith that also returns how the command ended.
func meshctlAs(t *testing.T, kubeconfig string, d time.Duration, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := filepath.Join(cluster.local.RepoDir, "bin", "meshctl")
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", kubeconfig)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	t.Logf("meshctl %s: %v\n%s%s", strings.Join(args, " "), err, errb.String(), out.String())
	return out.String(), errb.String(), err
}

// serviceAccountKubeconfig makes a ServiceAccount that may read pods and
// Deployments in ns (what meshctl resolves targets with) and nothing of
// admin.meshctl.io, and a kubeconfig with a token for it.
func serviceAccountKubeconfig(t *testing.T, ns, name string) (string, *rest.Config) {
	t.Helper()
	ctx := context.Background()
	if _, err := cluster.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: []string{"get", "list"}},
		},
	}
	if _, err := cluster.client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := cluster.client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return tokenKubeconfig(t, ns, name)
}

// readmeUser makes a ServiceAccount bound in ns as the README's "Use it on
// your own cluster" says a user of the read commands is (view, get on
// pods/proxy, meshctl-admin-viewer) and returns a kubeconfig for it.
func readmeUser(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cluster.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind(t, ns, name, "view")
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-proxy-metrics"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/proxy"}, Verbs: []string{"get"}}},
	}
	if _, err := cluster.client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := cluster.client.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind(t, ns, name, meshnames.AdminViewerClusterRole)
	path, _ := tokenKubeconfig(t, ns, name)
	return path
}

// tokenKubeconfig writes a kubeconfig with a token for the ServiceAccount
// ns/name, its namespace the context's.
func tokenKubeconfig(t *testing.T, ns, name string) (string, *rest.Config) {
	t.Helper()
	ctx := context.Background()
	expiry := int64(3600)
	tok, err := cluster.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cluster.cfg.Host, CertificateAuthorityData: cluster.cfg.TLSClientConfig.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name, Namespace: ns}
	kc.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path, &rest.Config{Host: cluster.cfg.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cluster.cfg.TLSClientConfig.CAData}}
}

// bind binds a ClusterRole to a ServiceAccount in its namespace.
func bind(t *testing.T, ns, sa, clusterRole string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + clusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}
	if _, err := cluster.client.RbacV1().RoleBindings(ns).Create(context.Background(), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podIP(t *testing.T, ns, name string) string {
	t.Helper()
	p, err := cluster.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || p.Status.PodIP == "" {
		t.Fatalf("pod %s/%s: no IP (%v)", ns, name, err)
	}
	return p.Status.PodIP
}

func controllerPodIP(t *testing.T) string {
	t.Helper()
	pods := podsOf(t, "meshctl", controllerSelector)
	if len(pods) == 0 {
		t.Fatal("no controller pod")
	}
	return podIP(t, "meshctl", pods[0])
}

// getController sends GET url straight to the controller's admin API (not
// through the API server), trusting the webhook CA, with cert as the client
// certificate (none when nil), and returns the status and body.
func getController(ctx context.Context, t *testing.T, url string, cert *tls.Certificate, header http.Header) (int, string) {
	t.Helper()
	sec, err := cluster.client.CoreV1().Secrets("meshctl").Get(ctx, meshnames.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sec.Data["ca.crt"])
	cfg := &tls.Config{RootCAs: roots, ServerName: "mesh-controller.meshctl.svc"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return resp.StatusCode, st.Message
	}
	return resp.StatusCode, string(body)
}

// runOnNode runs a one-shot testapp pod in the node's network namespace
// (hostNetwork: what the node, the kubelet and NodePort traffic look like to
// a pod) and returns its output; the test fails if it fails, unless mayFail.
func runOnNode(t *testing.T, ns, name string, args []string, mayFail bool) string {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			HostNetwork:   true,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "main", Image: testappImage, ImagePullPolicy: corev1.PullNever, Args: args}},
		},
	}
	if _, err := cluster.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	var phase corev1.PodPhase
	eventually(t, "pod "+name+" to finish", 2*time.Minute, func(ctx context.Context) error {
		p, err := cluster.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if phase = p.Status.Phase; phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return nil
		}
		return fmt.Errorf("phase %s", phase)
	})
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	if phase != corev1.PodSucceeded && !mayFail {
		t.Fatalf("pod %s %s; output:\n%s", name, phase, logs)
	}
	return strings.TrimSpace(string(logs))
}
