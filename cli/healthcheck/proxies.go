package healthcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
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
			Name: "proxies send nothing in plaintext into the cluster",
			Hint: "no_identity: the destination's pods have no proxy (mesh them: meshctl inject); not_in_mesh: the address is no meshed pod or Service (the node, a hostNetwork pod, an address the controller does not know); see each pod's plaintext_connections_total",
			Run:  proxiesPlaintext,
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
					if v := p.Labels[meshnames.VersionLabel]; v != env.Version {
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
	list, err := env.Client.CoreV1().Pods(env.ProxyNamespace).List(ctx, metav1.ListOptions{LabelSelector: meshnames.VersionLabel})
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
		if s.Name == meshnames.ProxyContainerName {
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
		raw, err := adminclient.Do(ctx, env.Client.CoreV1().RESTClient(), p.Namespace, p.Name, meshnames.AdminIdentity)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: %v", p.Namespace, p.Name, adminclient.Explain(err, meshnames.AdminIdentity)))
			continue
		}
		var id api.IdentityInfo
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

// proxiesPlaintext warns about every meshed pod whose proxy made plaintext
// connections into the cluster's networks (its plaintext_connections_total,
// read through the API server's pods/proxy), by reason.
func proxiesPlaintext(ctx context.Context, env *Env) error {
	pods, err := meshedPods(ctx, env)
	if err != nil {
		return err
	}
	var findings, unread []string
	for _, p := range pods {
		raw, err := env.Client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, strconv.Itoa(meshnames.ProxyAdminPort), "/metrics", nil).DoRaw(ctx)
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s/%s (%v)", p.Namespace, p.Name, err))
			continue
		}
		sample, err := proxystats.Parse(bytes.NewReader(raw))
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s/%s (%v)", p.Namespace, p.Name, err))
			continue
		}
		if f := plaintextFinding(p.Namespace+"/"+p.Name, sample.Plaintext); f != "" {
			findings = append(findings, f)
		}
	}
	if len(unread) > 0 {
		findings = append(findings, "metrics not read: "+strings.Join(unread, ", "))
	}
	return warnAbout(findings, "")
}

// plaintextFinding describes one proxy's plaintext connections, "" when none.
func plaintextFinding(pod string, byReason map[string]float64) string {
	var parts []string
	total := 0.0
	for _, reason := range slices.Sorted(maps.Keys(byReason)) {
		if n := byReason[reason]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%s %.0f", reason, n))
		}
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %.0f plaintext connections into the cluster (%s)", pod, total, strings.Join(parts, ", "))
}

// maxNamed bounds the pods a check names in its detail.
const maxNamed = 10

// uninjectedPods warns about running pods without a proxy in namespaces
// annotated meshctl.io/inject=enabled that did not opt out (their own
// annotation or label disabled, or host networking, which the injector
// skips).
func uninjectedPods(ctx context.Context, env *Env) error {
	nss, err := env.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	nsAnnotation := map[string]string{}
	for _, ns := range nss.Items {
		nsAnnotation[ns.Name] = ns.Annotations[meshnames.InjectAnnotation]
	}
	pods, err := env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var missing []string
	for _, p := range pods.Items {
		// The webhook's own rules: never kube-system nor the control
		// plane; not pods labelled out; the pod's annotation over its
		// namespace's; host-network pods are skipped.
		if p.Namespace == "kube-system" || p.Namespace == env.Namespace || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning ||
			p.Spec.HostNetwork || p.Labels[meshnames.VersionLabel] != "" || p.Labels[meshnames.DisabledLabel] == "disabled" {
			continue
		}
		if wanted, err := podpatch.Wanted(p.Annotations[meshnames.InjectAnnotation], nsAnnotation[p.Namespace]); err == nil && wanted {
			missing = append(missing, p.Namespace+"/"+p.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	named := missing
	if len(named) > maxNamed {
		named = append(named[:maxNamed:maxNamed], fmt.Sprintf("and %d more", len(missing)-maxNamed))
	}
	what := "pods run"
	if len(missing) == 1 {
		what = "pod runs"
	}
	return Warnf("%d %s without a proxy: %s", len(missing), what, strings.Join(named, ", "))
}
