package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/cli/dashboard"
	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/gamma"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
	"github.com/meshctl/meshctl/internal/version"
)

// httpRouteResource names HTTPRoutes for the dynamic client.
var httpRouteResource = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// kubeSource is the dashboard's view of the cluster, with the user's
// credentials: the code of stat (scrape), tap (openTap) and check
// (healthcheck) behind dashboard.Source.
type kubeSource struct {
	kc        *kubeClients // requests with a timeout
	streams   *kubeClients // tap streams, without
	controlNS string
}

var _ dashboard.Source = (*kubeSource)(nil)

func (k *kubeSource) Namespaces(ctx context.Context) ([]string, error) {
	list, err := k.kc.typed.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the namespaces: %w", err)
	}
	out := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out, nil
}

// workloadKind is the dashboard kind of a pod's workload.
func workloadKind(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			if p.Labels["pod-template-hash"] != "" {
				return dashboard.KindDeployment
			}
			return "replicaset"
		case "StatefulSet":
			return dashboard.KindStatefulSet
		case "DaemonSet":
			return dashboard.KindDaemonSet
		case "Job":
			return dashboard.KindJob
		}
		return strings.ToLower(o.Kind)
	}
	return dashboard.KindPod
}

// workloadOfPod is the workload a pod belongs to: its meshctl.io/workload
// label (what its proxy's metrics name it by), else its owner's name.
func workloadOfPod(p *corev1.Pod) string {
	if w := p.Labels[meshnames.WorkloadLabel]; w != "" {
		return w
	}
	return podpatch.WorkloadName(p)
}

func live(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
}

func (k *kubeSource) Snapshot(ctx context.Context, ns string) (*dashboard.Snapshot, error) {
	client := k.kc.typed
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the pods: %w", err)
	}
	snap := &dashboard.Snapshot{PodLabels: map[string]map[string]string{}}
	index := map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !live(p) {
			continue
		}
		name, kind := workloadOfPod(p), workloadKind(p)
		key := p.Namespace + "/" + name
		j, ok := index[key]
		if !ok {
			j = len(snap.Workloads)
			index[key] = j
			snap.Workloads = append(snap.Workloads, proxystats.Resource{Kind: kind, Namespace: p.Namespace, Name: name})
		}
		_, meshed := p.Labels[meshnames.VersionLabel]
		snap.Workloads[j].Pods = append(snap.Workloads[j].Pods, &proxystats.Pod{Namespace: p.Namespace, Name: p.Name, Workload: name, Meshed: meshed})
		snap.PodLabels[p.Namespace+"/"+p.Name] = p.Labels
	}
	scrape(ctx, client, snap.Workloads, true, nil)
	svcs, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		snap.Errors = append(snap.Errors, fmt.Sprintf("list the Services: %v", err))
	} else {
		snap.Services = svcs.Items
	}
	routes, err := k.kc.dynamic.Resource(httpRouteResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err): // the Gateway API is not installed: no routes
	case err != nil:
		snap.Errors = append(snap.Errors, fmt.Sprintf("list the HTTPRoutes: %v", err))
	default:
		for _, u := range routes.Items {
			var r gatewayv1.HTTPRoute
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				snap.Errors = append(snap.Errors, fmt.Sprintf("HTTPRoute %s/%s: %v", u.GetNamespace(), u.GetName(), err))
				continue
			}
			if slices.ContainsFunc(r.Spec.ParentRefs, gamma.IsServiceParent) {
				snap.Routes = append(snap.Routes, r)
			}
		}
	}
	return snap, nil
}

func (k *kubeSource) Workload(ctx context.Context, ns, name string) (*dashboard.WorkloadObjects, error) {
	client := k.kc.typed
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the pods: %w", err)
	}
	objs := &dashboard.WorkloadObjects{TrustDomain: trustDomain(ctx, client, k.controlNS), ClusterDefault: k.clusterDefault(ctx)}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && workloadOfPod(p) == name {
			objs.Pods = append(objs.Pods, *p)
			objs.Kind = workloadKind(p)
		}
	}
	if n, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		objs.Errors = append(objs.Errors, fmt.Sprintf("read namespace %s: %v", ns, err))
	} else {
		objs.NamespaceAnnotations = n.Annotations
	}
	list, err := k.kc.dynamic.Resource(policyapi.GroupVersionResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		objs.Errors = append(objs.Errors, fmt.Sprintf("list the AuthorizationPolicies: %v", err))
	default:
		for _, u := range list.Items {
			var p policyapi.AuthorizationPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
				objs.Errors = append(objs.Errors, fmt.Sprintf("AuthorizationPolicy %s/%s: %v", u.GetNamespace(), u.GetName(), err))
				continue
			}
			objs.Policies = append(objs.Policies, &p)
		}
	}
	return objs, nil
}

// clusterDefault reads the controller's --default-inbound-policy.
func (k *kubeSource) clusterDefault(ctx context.Context) string {
	d, err := k.kc.typed.AppsV1().Deployments(k.controlNS).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
	if err == nil {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--default-inbound-policy="); ok {
					return v
				}
			}
		}
	}
	return meshnames.DefaultAllUnauthenticated
}

func (k *kubeSource) ProxyIdentity(ctx context.Context, ns, pod string) (api.IdentityInfo, error) {
	return readProxyIdentity(ctx, k.kc.typed, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod}})
}

func (k *kubeSource) Identity(ctx context.Context) (*dashboard.IdentityObjects, error) {
	client := k.kc.typed
	objs := &dashboard.IdentityObjects{}
	roots, err := clusterRoots(ctx, client, k.controlNS)
	if err != nil {
		objs.Errors = append(objs.Errors, fmt.Sprintf("trust anchors: %v", err))
	}
	objs.Anchors = roots
	sec, err := client.CoreV1().Secrets(k.controlNS).Get(ctx, meshnames.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		objs.IssuerError = err.Error()
	} else if _, chain, err := certs.ParseRoots(sec.Data[corev1.TLSCertKey]); err != nil {
		// Only the certificate: the page has no use for the key.
		objs.IssuerError = fmt.Sprintf("the issuer's certificate: %v", err)
	} else {
		objs.Issuer = chain[0]
	}
	pods, err := meshedPods(ctx, client)
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		objs.MeshedPods = append(objs.MeshedPods, p.Namespace+"/"+p.Name)
	}
	return objs, nil
}

func (k *kubeSource) Health(ctx context.Context) []healthcheck.Result {
	env := &healthcheck.Env{
		Config: k.kc.config, Client: k.kc.typed, Dynamic: k.kc.dynamic, Namespace: k.controlNS,
		Version: version.Version, Now: time.Now(),
	}
	cats := []healthcheck.Category{healthcheck.KubernetesAPI(), healthcheck.ControlPlane(), healthcheck.Identity(), healthcheck.Policy(), healthcheck.Proxies()}
	return healthcheck.Run(ctx, env, cats, healthcheck.Options{})
}

func (k *kubeSource) Tap(ctx context.Context, pods []tapstream.Pod, f tapstream.Filter, events chan<- tapstream.PodEvent, failed func(tapstream.Pod, error)) {
	tapstream.Follow(ctx, pods, openTap(k.streams.typed), f, events, failed, nil)
}
