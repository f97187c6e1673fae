package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/controller/injector"
	"github.com/meshctl/meshctl/proxy/admin"
)

// proxyAdminPort is where every proxy serves /identity and /renew.
const proxyAdminPort = "4191"

// proxyIdentity is a proxy's /identity.
type proxyIdentity = admin.IdentityInfo

// hasProxy says whether a pod's init containers include the proxy.
func hasProxy(cs []corev1.Container) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == injector.ProxyContainerName })
}

// meshedPods lists the running pods that have a proxy, in every namespace.
func meshedPods(ctx context.Context, client kubernetes.Interface) ([]corev1.Pod, error) {
	list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: injector.VersionLabel})
	if err != nil {
		return nil, fmt.Errorf("list the meshed pods: %w", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out, nil
}

// readProxyIdentity asks a proxy for its certificate through the API server.
func readProxyIdentity(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) (proxyIdentity, error) {
	var id proxyIdentity
	raw, err := client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, proxyAdminPort, "/identity", nil).DoRaw(ctx)
	if err != nil {
		return id, err
	}
	return id, json.Unmarshal(raw, &id)
}

// renewProxy asks a proxy to get a new certificate now.
func renewProxy(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) error {
	_, err := client.CoreV1().RESTClient().Post().Namespace(p.Namespace).Resource("pods").
		Name(p.Name + ":" + proxyAdminPort).SubResource("proxy").Suffix("renew").DoRaw(ctx)
	return err
}

// waitProxies waits until every meshed proxy satisfies done, asking the
// ones that do not to renew their certificates when renew is set, and
// printing progress as it changes.
func waitProxies(ctx context.Context, client kubernetes.Interface, what string, done func(proxyIdentity) bool, renew bool, progress io.Writer) error {
	last := ""
	asked := map[string]time.Time{}
	return poll(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := meshedPods(ctx, client)
		if err != nil {
			return false, err
		}
		ok := 0
		var waiting []string
		for i := range pods {
			p := &pods[i]
			id, err := readProxyIdentity(ctx, client, p)
			if err == nil && done(id) {
				ok++
				continue
			}
			waiting = append(waiting, p.Namespace+"/"+p.Name)
			key := p.Namespace + "/" + p.Name
			if renew && err == nil && time.Since(asked[key]) > 5*time.Second {
				if err := renewProxy(ctx, client, p); err == nil {
					asked[key] = time.Now()
				}
			}
		}
		line := fmt.Sprintf("    %d/%d proxies %s", ok, len(pods), what)
		if len(waiting) > 0 && len(waiting) <= 3 {
			slices.Sort(waiting)
			line += fmt.Sprintf(" (waiting for %v)", waiting)
		}
		if line != last {
			fmt.Fprintln(progress, line)
			last = line
		}
		return ok == len(pods), nil
	})
}
