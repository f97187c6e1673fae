//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install/webhookcert"
)

// deployControlPlane deploys mesh-controller by hand (until `meshctl
// install` renders it) with the given issuer and trust anchors, the webhook's
// certificate and configuration, waits for it to be ready, and removes all of
// it when the test ends.
func deployControlPlane(t *testing.T, leafLifetime string, issuer *ca.KeyPair, anchors ...*ca.KeyPair) {
	t.Helper()
	ctx := context.Background()
	hook, err := webhookcert.Generate("mesh-controller", "meshctl", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, "meshctl")
		}
		ctx := context.Background()
		_ = cluster.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "meshctl-proxy-injector", metav1.DeleteOptions{})
		_ = cluster.client.CoreV1().Namespaces().Delete(ctx, "meshctl", metav1.DeleteOptions{})
		for _, crb := range []string{"meshctl-controller-auth-delegator", "meshctl-controller"} {
			_ = cluster.client.RbacV1().ClusterRoleBindings().Delete(ctx, crb, metav1.DeleteOptions{})
		}
		_ = cluster.client.RbacV1().ClusterRoles().Delete(ctx, "meshctl-controller", metav1.DeleteOptions{})
		eventually(t, "the meshctl namespace to go", 2*time.Minute, func(ctx context.Context) error {
			if _, err := cluster.client.CoreV1().Namespaces().Get(ctx, "meshctl", metav1.GetOptions{}); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})
	})
	applyTemplate(t, "controller.yaml", map[string]string{"LeafLifetime": leafLifetime})
	if _, err := cluster.client.CoreV1().Secrets("meshctl").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: webhookcert.SecretName},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: hook.CertPEM, corev1.TLSPrivateKeyKey: hook.KeyPEM, "ca.crt": hook.CABundle},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyTemplate(t, "webhook.yaml", map[string]string{"CABundle": base64.StdEncoding.EncodeToString(hook.CABundle)})
	putTrust(t, "", issuer, anchors...)
	waitReady(t, "meshctl", "mesh-controller", 2*time.Minute)
	waitInjector(t)
}

// waitInjector waits until the API server reaches the webhook: a Ready
// controller is not enough (kube-proxy programs the new Service a moment
// later), and with failurePolicy Ignore pods created before that would
// silently start without a proxy. A dry-run pod asking for the proxy shows it.
func waitInjector(t *testing.T) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "injector-probe-", Annotations: map[string]string{"meshctl.io/inject": "enabled"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: testappImage}}},
	}
	eventually(t, "the API server to reach the injector", time.Minute, func(ctx context.Context) error {
		got, err := cluster.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		for _, c := range got.Spec.InitContainers {
			if c.Name == "mesh-proxy" {
				return nil
			}
		}
		return fmt.Errorf("a dry-run pod was not injected")
	})
}
