package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// proxyAdminPort is where every proxy serves /metrics, which anyone may read
// (through the API server's pods/proxy). /identity, /renew and /tap are
// reached through the controller's admin API (package adminapi).
var proxyAdminPort = strconv.Itoa(meshnames.ProxyAdminPort)

// proxyIdentity is a proxy's /identity.
type proxyIdentity = api.IdentityInfo

// hasProxy says whether a pod's init containers include the proxy.
func hasProxy(cs []corev1.Container) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == meshnames.ProxyContainerName })
}

// meshedPods lists the running pods that have a proxy, in every namespace.
func meshedPods(ctx context.Context, client kubernetes.Interface) ([]corev1.Pod, error) {
	list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: meshnames.VersionLabel})
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

// readProxyIdentity asks a proxy for its certificate through the admin API
// (pods/identity in admin.meshctl.io), with the user's credentials. Errors
// say what to do (adminclient.Explain).
func readProxyIdentity(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) (proxyIdentity, error) {
	var id proxyIdentity
	raw, err := adminclient.Do(ctx, client.CoreV1().RESTClient(), p.Namespace, p.Name, meshnames.AdminIdentity)
	if err != nil {
		return id, adminclient.Explain(err, meshnames.AdminIdentity)
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return id, fmt.Errorf("its /identity: %w", err)
	}
	return id, nil
}

// renewProxy asks a proxy to get a new certificate now, through the admin
// API (pods/renew: create).
func renewProxy(ctx context.Context, client kubernetes.Interface, p *corev1.Pod) error {
	_, err := adminclient.Do(ctx, client.CoreV1().RESTClient(), p.Namespace, p.Name, meshnames.AdminRenew)
	return adminclient.Explain(err, meshnames.AdminRenew)
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
			if refused(err) {
				return false, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
			}
			if err == nil && done(id) {
				ok++
				continue
			}
			waiting = append(waiting, p.Namespace+"/"+p.Name)
			key := p.Namespace + "/" + p.Name
			if renew && err == nil && time.Since(asked[key]) > 5*time.Second {
				err := renewProxy(ctx, client, p)
				if refused(err) {
					return false, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				if err == nil {
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

// refused reports an error that waiting does not cure: the user may not use
// the admin API, or the API server does not let them in at all.
func refused(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
}

// mayFollowProxies checks, before a rotation changes anything, that the user
// may read every proxy's identity and ask it to renew (admin.meshctl.io,
// pods/identity get and pods/renew create, in every namespace).
func mayFollowProxies(ctx context.Context, client kubernetes.Interface) error {
	for _, a := range []struct{ sub, verb string }{{meshnames.AdminIdentity, meshnames.VerbGet}, {meshnames.AdminRenew, meshnames.VerbCreate}} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: meshnames.AdminGroup, Version: meshnames.AdminVersion, Resource: meshnames.AdminResource, Subresource: a.sub, Verb: a.verb,
			},
		}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check your rights on the proxies: %w", err)
		}
		if !got.Status.Allowed {
			return fmt.Errorf("a rotation follows every proxy, and you may not %s pods/%s in API group %s in every namespace: "+
				"a cluster admin can grant it with the ClusterRole %s (kubectl create clusterrolebinding NAME --clusterrole=%s --user=YOU)",
				a.verb, a.sub, meshnames.AdminGroup, meshnames.AdminOperatorClusterRole, meshnames.AdminOperatorClusterRole)
		}
	}
	return nil
}
