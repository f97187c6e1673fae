package healthcheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/controller/adminapi"
	"github.com/meshctl/meshctl/proxy/admin"
)

// Proxies checks the meshed pods' proxies (meshctl check --proxy).
func Proxies() Category {
	return Category{Name: "data-plane", Checks: []Check{
		{
			Name: "meshed pods' proxies are ready",
			Hint: "see why: kubectl describe pod POD; kubectl logs POD -c mesh-proxy",
			Run: func(ctx context.Context, env *Env) error {
				pods, err := meshedPods(ctx, env)
				if err != nil {
					return err
				}
				var bad []string
				for _, p := range pods {
					if !proxyReady(&p) {
						bad = append(bad, p.Namespace+"/"+p.Name)
					}
				}
				if len(bad) > 0 {
					return fmt.Errorf("proxies not ready: %s", strings.Join(bad, ", "))
				}
				return nil
			},
		},
		{
			Name: "proxies' certificates are valid and from the current issuer",
			Hint: "proxies renew at 70 % of their certificates' life; one on an old issuer renews by then, or restart the pod",
			Run:  proxyCertificates,
		},
		{
			Name: "proxies run this CLI's version",
			Hint: "restart the workloads to get the current proxy: kubectl rollout restart deploy -n NS",
			Run: func(ctx context.Context, env *Env) error {
				pods, err := meshedPods(ctx, env)
				if err != nil {
					return err
				}
				var other []string
				for _, p := range pods {
					if v := p.Labels[proxyVersionKey]; v != env.Version {
						other = append(other, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, v))
					}
				}
				if len(other) > 0 {
					return Warnf("proxies of another version: %s", strings.Join(other, ", "))
				}
				return nil
			},
		},
	}}
}

func meshedPods(ctx context.Context, env *Env) ([]corev1.Pod, error) {
	list, err := env.Client.CoreV1().Pods(env.ProxyNamespace).List(ctx, metav1.ListOptions{LabelSelector: proxyVersionKey})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out, nil
}

func proxyReady(p *corev1.Pod) bool {
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "mesh-proxy" {
			return s.Ready
		}
	}
	return false
}

func proxyCertificates(ctx context.Context, env *Env) error {
	issuer, err := readIssuer(ctx, env)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(issuer.Cert.Raw)
	current := hex.EncodeToString(sum[:])
	pods, err := meshedPods(ctx, env)
	if err != nil {
		return err
	}
	var problems []string
	for _, p := range pods {
		raw, err := adminapi.Do(ctx, env.Client.CoreV1().RESTClient(), p.Namespace, p.Name, adminapi.Identity)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: %v", p.Namespace, p.Name, adminapi.Explain(err, adminapi.Identity)))
			continue
		}
		var id admin.IdentityInfo
		if err := json.Unmarshal(raw, &id); err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: /identity: %v", p.Namespace, p.Name, err))
			continue
		}
		switch {
		case env.Now.After(id.NotAfter):
			problems = append(problems, fmt.Sprintf("%s/%s: certificate expired at %s", p.Namespace, p.Name, id.NotAfter.Format(time.RFC3339)))
		case id.IssuerFingerprint != current:
			problems = append(problems, fmt.Sprintf("%s/%s: certificate from another issuer", p.Namespace, p.Name))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
