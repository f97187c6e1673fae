//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/testpki"
)

// withIdentity gives a hand-made sidecar its certificate (from a Secret),
// lets the node use /tap and /identity, and passes extra flags.
func withIdentity(spec *corev1.PodSpec, secret string, extraArgs ...string) {
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if c.Name != "mesh-proxy" {
			continue
		}
		c.Args = append(c.Args, "--cert", "/var/run/meshctl/identity/cert.pem", "--key", "/var/run/meshctl/identity/key.pem",
			"--trust-roots", "/var/run/meshctl/identity/roots.pem")
		c.Args = append(c.Args, extraArgs...)
		c.Env = append(c.Env, corev1.EnvVar{Name: "MESH_PROXY_ADMIN_ALLOW", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "mesh-identity", MountPath: "/var/run/meshctl/identity", ReadOnly: true})
	}
	mode := int32(0o444)
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "mesh-identity", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, DefaultMode: &mode}}})
}

// identitySecret stores a workload certificate issued by ca for a ServiceAccount.
func identitySecret(t *testing.T, ns, name, sa string, ca *testpki.CA) string {
	t.Helper()
	leaf := ca.Issue(t, fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa), -time.Minute, 24*time.Hour)
	_, err := cluster.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string][]byte{"cert.pem": leaf.CertPEM(), "key.pem": leaf.KeyPEM(t), "roots.pem": testpki.CertPEM(ca.Cert)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestMeshedHopOnTheCluster: two meshed workloads with hand-made sidecars
// and certificates; the client's requests to the server's Service cross the
// meshed hop (the server's proxy names the client), a plaintext client is
// refused on the server's port, and /tap does not answer another pod.
func TestMeshedHopOnTheCluster(t *testing.T) {
	ns := newNamespace(t, "mesh")
	ctx := context.Background()
	ca := testpki.NewRoot(t, "e2e-root")
	for _, sa := range []string{"web", "client"} {
		if _, err := cluster.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := webDeployment("web", 2)
	web.Spec.Template.Spec.ServiceAccountName = "web"
	withHandMadeSidecar(&web.Spec.Template.Spec)
	withIdentity(&web.Spec.Template.Spec, identitySecret(t, ns, "web-identity", "web", ca), "--require-tls-ports", "8080", "--kubelet-probes", "8080/healthz")
	if _, err := cluster.client.AppsV1().Deployments(ns).Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cluster.client.CoreV1().Services(ns).Create(ctx, serviceFor("web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "web", 3*time.Minute)
	pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}

	// Until discovery exists, the client's proxy learns the Service's
	// endpoints and their identity from a file.
	webID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", ns)
	var eps []string
	for _, p := range pods.Items {
		eps = append(eps, fmt.Sprintf(`{"addr": "%s:8080", "identity": %q}`, p.Status.PodIP, webID))
	}
	table := fmt.Sprintf(`{"%s:80": [%s]}`, svc.Spec.ClusterIP, strings.Join(eps, ","))
	if _, err := cluster.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "endpoints"}, Data: map[string]string{"endpoints.json": table},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("web.%s.svc.cluster.local", ns)
	client := webDeployment("client", 1)
	client.Spec.Template.Spec.ServiceAccountName = "client"
	client.Spec.Template.Spec.Containers[0].Args = []string{"load", "--url", "http://" + host + "/", "--rps", "20", "--report", "2s"}
	client.Spec.Template.Spec.Containers[0].ReadinessProbe = nil
	withHandMadeSidecar(&client.Spec.Template.Spec)
	withIdentity(&client.Spec.Template.Spec, identitySecret(t, ns, "client-identity", "client", ca), "--endpoints-file", "/var/run/meshctl/endpoints/endpoints.json")
	for i := range client.Spec.Template.Spec.InitContainers {
		c := &client.Spec.Template.Spec.InitContainers[i]
		if c.Name == "mesh-proxy" {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "endpoints", MountPath: "/var/run/meshctl/endpoints"})
		}
	}
	client.Spec.Template.Spec.Volumes = append(client.Spec.Template.Spec.Volumes, corev1.Volume{Name: "endpoints",
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "endpoints"}}}})
	if _, err := cluster.client.AppsV1().Deployments(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "client", 3*time.Minute)

	clientID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client", ns)
	eventually(t, "the servers' proxies to see 40 meshed requests from the client", time.Minute, func(ctx context.Context) error {
		total := 0.0
		for _, p := range pods.Items {
			m, err := proxyMetrics(ctx, ns, p.Name)
			if err != nil {
				return err
			}
			n := sumMatching(m, "response_total{", "direction=inbound", "tls=true", "client_id="+clientID, "status_code=200")
			total += n
		}
		if total < 40 {
			return fmt.Errorf("%v meshed responses", total)
		}
		return nil
	})

	// A plaintext client (no sidecar) is refused on the server's port.
	out := runToCompletion(t, ns, "plaintext", []string{"check", "--get", fmt.Sprintf("http://%s:8080/", pods.Items[0].Status.PodIP), "--requests", "1"}, 2*time.Minute, true)
	if !strings.Contains(out, "403") {
		t.Errorf("a plaintext client got %q, want 403 Forbidden", out)
	}

	// /tap does not answer another pod in plaintext. (Through the admin API
	// it needs a control plane, which this test does not install: see
	// TestAdminAPIOnTheCluster.)
	out = runToCompletion(t, ns, "snoop", []string{"check", "--get", fmt.Sprintf("http://%s:4191/tap", pods.Items[0].Status.PodIP), "--requests", "1"}, 2*time.Minute, true)
	if !strings.Contains(out, "403") {
		t.Errorf("another pod's /tap request got %q, want 403", out)
	}
}
