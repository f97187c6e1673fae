package healthcheck

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/policyapi"
)

// httpRoutes are the Gateway API's HTTPRoutes, the version meshctl reads.
var httpRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// maxFindings caps the problems one check lists; the rest are counted.
const maxFindings = 20

// Policy checks that traffic splits (HTTPRoutes) and AuthorizationPolicies
// refer to what exists. A mistake there is a silent no-op or a failing
// share of traffic, not a broken mesh: both checks only warn, and pass with
// a note when their CRD is not installed.
func Policy() Category {
	return Category{Name: "policy", Checks: []Check{
		{
			Name: "HTTPRoutes point at existing Services",
			Hint: "create the Service or fix the route's parentRefs/backendRefs (kind Service, group \"\"): a parentRef to a missing Service splits nothing, and requests sent to a missing backend fail (HTTP 500)",
			Run:  routesReferToServices,
		},
		{
			Name: "AuthorizationPolicies select pods",
			Hint: "fix the podSelector (kubectl get pods -n NS --show-labels) or the port (a containerPort number or name of the selected pods; declare the ports apps listen on): a policy that selects no server allows nothing",
			Run:  policiesSelectPods,
		},
	}}
}

func routesReferToServices(ctx context.Context, env *Env) error {
	list, err := env.Dynamic.Resource(httpRoutes).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return Notef("the Gateway API's HTTPRoute (v1) is not installed: no routes to check")
	}
	if err != nil {
		return Warnf("cannot list HTTPRoutes: %v", err)
	}
	var routes []gatewayv1.HTTPRoute
	var findings []string
	for _, u := range list.Items {
		var r gatewayv1.HTTPRoute
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			findings = append(findings, fmt.Sprintf("%s/%s: cannot read it: %v", u.GetNamespace(), u.GetName(), err))
			continue
		}
		routes = append(routes, r)
	}
	services := map[string]bool{}
	for _, ns := range refNamespaces(routes) {
		svcs, err := env.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return Warnf("cannot list the Services in %s: %v", ns, err)
		}
		for _, s := range svcs.Items {
			services[s.Namespace+"/"+s.Name] = true
		}
	}
	return warnAbout(append(findings, routeFindings(routes, services)...))
}

// serviceRef is a route's reference to a Service.
type serviceRef struct {
	// field is "parentRef" or "backendRef".
	field           string
	namespace, name string
}

// serviceRefs lists the Services a route refers to, with the Gateway API's
// defaults: a parentRef is a Gateway unless it says Service in the core
// group; a backendRef is a Service unless it says otherwise; the namespace
// is the route's unless given.
func serviceRefs(r *gatewayv1.HTTPRoute) []serviceRef {
	isService := func(group *gatewayv1.Group, kind *gatewayv1.Kind, defaultKind gatewayv1.Kind, defaultGroup gatewayv1.Group) bool {
		g, k := defaultGroup, defaultKind
		if group != nil {
			g = *group
		}
		if kind != nil {
			k = *kind
		}
		return k == "Service" && (g == "" || g == "core")
	}
	ns := func(n *gatewayv1.Namespace) string {
		if n != nil && *n != "" {
			return string(*n)
		}
		return r.Namespace
	}
	var out []serviceRef
	for _, p := range r.Spec.ParentRefs {
		if isService(p.Group, p.Kind, "Gateway", gatewayv1.GroupName) {
			out = append(out, serviceRef{"parentRef", ns(p.Namespace), string(p.Name)})
		}
	}
	for _, rule := range r.Spec.Rules {
		for _, b := range rule.BackendRefs {
			if isService(b.Group, b.Kind, "Service", "") {
				out = append(out, serviceRef{"backendRef", ns(b.Namespace), string(b.Name)})
			}
		}
	}
	return out
}

// refNamespaces are the namespaces the routes' Service references are in.
func refNamespaces(routes []gatewayv1.HTTPRoute) []string {
	var out []string
	for i := range routes {
		for _, ref := range serviceRefs(&routes[i]) {
			if !slices.Contains(out, ref.namespace) {
				out = append(out, ref.namespace)
			}
		}
	}
	sort.Strings(out)
	return out
}

// routeFindings names every route reference to a Service missing from
// services ("namespace/name" keys), each once.
func routeFindings(routes []gatewayv1.HTTPRoute, services map[string]bool) []string {
	var out []string
	for i := range routes {
		r := &routes[i]
		for _, ref := range serviceRefs(r) {
			key := ref.namespace + "/" + ref.name
			if services[key] {
				continue
			}
			f := fmt.Sprintf("%s/%s: %s %s (Service %s) does not exist", r.Namespace, r.Name, ref.field, ref.name, key)
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func policiesSelectPods(ctx context.Context, env *Env) error {
	list, err := env.Dynamic.Resource(policyapi.GroupVersionResource).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return Notef("the AuthorizationPolicy CRD is not installed (meshctl install adds it): no policies to check")
	}
	if err != nil {
		return Warnf("cannot list AuthorizationPolicies: %v", err)
	}
	var policies []policyapi.AuthorizationPolicy
	var findings []string
	pods := map[string][]corev1.Pod{}
	for _, u := range list.Items {
		var p policyapi.AuthorizationPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			findings = append(findings, fmt.Sprintf("%s/%s: cannot read it: %v", u.GetNamespace(), u.GetName(), err))
			continue
		}
		policies = append(policies, p)
		if _, done := pods[p.Namespace]; done {
			continue
		}
		list, err := env.Client.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return Warnf("cannot list the pods in %s: %v", p.Namespace, err)
		}
		pods[p.Namespace] = list.Items
	}
	return warnAbout(append(findings, policyFindings(policies, pods)...))
}

// policyFindings names every policy whose podSelector selects no live pod
// of its namespace (pods are by namespace), or whose port is no container
// port of the pods it selects.
func policyFindings(policies []policyapi.AuthorizationPolicy, pods map[string][]corev1.Pod) []string {
	var out []string
	for _, p := range policies {
		name := p.Namespace + "/" + p.Name
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: podSelector is invalid: %v", name, err))
			continue
		}
		var selected []*corev1.Pod
		for i := range pods[p.Namespace] {
			pod := &pods[p.Namespace][i]
			if live(pod) && sel.Matches(labels.Set(pod.Labels)) {
				selected = append(selected, pod)
			}
		}
		if len(selected) == 0 {
			out = append(out, fmt.Sprintf("%s: podSelector %s selects no pod in namespace %s", name, describeSelector(sel), p.Namespace))
			continue
		}
		if p.Spec.Port != nil && !slices.ContainsFunc(selected, func(pod *corev1.Pod) bool { return hasPort(pod, *p.Spec.Port) }) {
			out = append(out, fmt.Sprintf("%s: port %s is no declared container port of the %d pods it selects", name, p.Spec.Port.String(), len(selected)))
		}
	}
	return out
}

func describeSelector(sel labels.Selector) string {
	if sel.Empty() {
		return "{} (every pod)"
	}
	return "{" + sel.String() + "}"
}

// live: a pod that is, or will be, running.
func live(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// hasPort reports whether one of the pod's containers (sidecars included,
// the proxy not) declares port, by number or name.
func hasPort(p *corev1.Pod, port intstr.IntOrString) bool {
	containers := slices.Clone(p.Spec.Containers)
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways && c.Name != "mesh-proxy" {
			containers = append(containers, c)
		}
	}
	for _, c := range containers {
		for _, cp := range c.Ports {
			if port.Type == intstr.Int && cp.ContainerPort == port.IntVal || port.Type == intstr.String && cp.Name == port.StrVal {
				return true
			}
		}
	}
	return false
}

// warnAbout turns findings into a warning listing at most maxFindings.
func warnAbout(findings []string) error {
	if len(findings) == 0 {
		return nil
	}
	more := ""
	if len(findings) > maxFindings {
		more = fmt.Sprintf("; and %d more", len(findings)-maxFindings)
		findings = findings[:maxFindings]
	}
	return Warnf("%s%s", strings.Join(findings, "; "), more)
}
