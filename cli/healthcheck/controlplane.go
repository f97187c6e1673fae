package healthcheck

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// ControlPlane checks the installed control plane.
func ControlPlane() Category {
	return Category{Name: "control-plane", Checks: []Check{
		{
			Name:  "the control plane namespace exists",
			Hint:  "install it: meshctl install",
			Fatal: true,
			Run: func(ctx context.Context, env *Env) error {
				_, err := env.Client.CoreV1().Namespaces().Get(ctx, env.Namespace, metav1.GetOptions{})
				return err
			},
		},
		{
			Name: "controller pods are ready",
			Hint: "see why: kubectl -n meshctl describe pods -l " + install.NameLabel + "=" + meshnames.ServiceName + "; kubectl -n meshctl logs deploy/mesh-controller",
			Run: func(ctx context.Context, env *Env) error {
				d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				if want == 0 || d.Status.ReadyReplicas < want {
					return fmt.Errorf("%d of %d %s replicas ready", d.Status.ReadyReplicas, want, meshnames.ServiceName)
				}
				return nil
			},
		},
		{
			Name: "the identity and destination APIs answer",
			Hint: "check the controller's logs: kubectl -n meshctl logs deploy/mesh-controller",
			Run:  controlAPIAnswers,
		},
		adminAPICheck(),
		{
			Name: "the proxy injector is reachable with a valid certificate",
			Hint: "re-create the webhook's certificate and CA bundle: meshctl install",
			Run:  webhookHealthy,
		},
		{
			Name: "the control plane runs this CLI's version",
			Hint: "upgrade the control plane with this CLI: meshctl install",
			Run: func(ctx context.Context, env *Env) error {
				d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if v := d.Labels[install.VersionLabel]; v != env.Version {
					return Warnf("the control plane is %s, this CLI %s", v, env.Version)
				}
				return nil
			},
		},
		{
			Name: "pods of namespaces marked for injection have their proxy",
			Hint: "they were created while the injector was unreachable (or before the namespace was marked): re-create them, e.g. kubectl rollout restart deploy -n NS",
			Run:  uninjectedPods,
		},
	}}
}

// controlAPIAnswers reaches the control API through the API server's
// service proxy: it must answer TLS, refuse destinations without a client
// certificate, and refuse a GET of certificates.
func controlAPIAnswers(ctx context.Context, env *Env) error {
	svc := env.Client.CoreV1().Services(env.Namespace)
	body, err := svc.ProxyGet("https", meshnames.ServiceName, meshnames.ControlPortName, "/v1/destinations", map[string]string{"target": "10.0.0.1:80"}).DoRaw(ctx)
	if err := adminclient.StatusOf(body, err); NotAllowed(err) {
		return fmt.Errorf("the control API through the API server's service proxy: %w", err)
	}
	if !bytes.Contains(body, []byte("no_client_certificate")) {
		return fmt.Errorf("the destination API did not answer as expected: %v %s", err, firstLine(body))
	}
	body, err = svc.ProxyGet("https", meshnames.ServiceName, meshnames.ControlPortName, "/v1/certificate", nil).DoRaw(ctx)
	if !bytes.Contains(body, []byte("use POST")) {
		return fmt.Errorf("the identity API did not answer as expected: %v %s", err, firstLine(body))
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// webhookHealthy checks the webhook's certificate against its CA bundle and
// has the API server call it (a dry-run pod asking for the proxy).
func webhookHealthy(ctx context.Context, env *Env) error {
	hook, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(hook.Webhooks) == 0 {
		return errors.New("the webhook configuration has no webhook")
	}
	sec, err := env.Client.CoreV1().Secrets(env.Namespace).Get(ctx, meshnames.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	chain, err := parseCerts(sec.Data[corev1.TLSCertKey])
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("the webhook certificate in Secret %s: %v", meshnames.WebhookSecret, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(hook.Webhooks[0].ClientConfig.CABundle) {
		return errors.New("the webhook configuration's caBundle holds no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	name := meshnames.ServiceName + "." + env.Namespace + ".svc"
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: name, CurrentTime: env.Now}); err != nil {
		return fmt.Errorf("the webhook certificate does not verify against the caBundle for %s: %w", name, err)
	}
	if left := chain[0].NotAfter.Sub(env.Now); left < 30*24*time.Hour {
		return Warnf("the webhook certificate expires in %s", left.Round(time.Hour))
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "meshctl-injector-probe-", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "meshctl/probe"}}},
	}
	got, err := env.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return fmt.Errorf("a dry-run pod was refused: %w", err)
	}
	for _, c := range got.Spec.InitContainers {
		if c.Name == meshnames.ProxyContainerName {
			return nil
		}
	}
	return errors.New("the API server did not get an answer from the webhook: a dry-run pod asking for the proxy was not injected")
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
