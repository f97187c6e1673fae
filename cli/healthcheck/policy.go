package healthcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/gamma"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// httpRoutes and grpcRoutes are the Gateway API's routes, the version
// meshctl reads.
var (
	httpRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}
	grpcRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "grpcroutes"}
)

// maxFindings caps the problems one check lists; the rest are counted.
const maxFindings = 20

// Policy checks that the mesh accepted the routes attached to Services
// (HTTPRoutes, GRPCRoutes), and that AuthorizationPolicies select pods. A mistake there is a silent no-op or a failing
// share of traffic, not a broken mesh: both checks only warn, and pass with
// a note when their CRD is not installed.
func Policy() Category {
	return Category{Name: "policy", Checks: []Check{
		{
			Name: "routes on Services are accepted by the mesh",
			Hint: "kubectl describe the route: Accepted=False means meshctl applies none of it (UnsupportedValue: change the value it names; NoMatchingParent: create the Service or fix the parentRef's name, port or sectionName); ResolvedRefs=False means requests sent to that backend fail (HTTP 500); no status at all means the controller is not running or older than the route",
			Run:  routesAccepted,
		},
		{
			Name: "AuthorizationPolicies select pods",
			Hint: "fix the podSelector (kubectl get pods -n NS --show-labels) or the port (a containerPort number or name of the selected pods; declare the ports apps listen on): a policy that selects no server allows nothing",
			Run:  policiesSelectPods,
		},
	}}
}

// routesAccepted reads the conditions the controller writes on routes
// attached to Services (controller routestatus) rather than judging the
// routes again: the controller is what decides.
func routesAccepted(ctx context.Context, env *Env) error {
	var findings []string
	scope := ""
	for _, res := range []struct {
		gvr      schema.GroupVersionResource
		kind     string
		required bool
	}{{httpRoutes, "HTTPRoute", true}, {grpcRoutes, "GRPCRoute", false}} {
		list, narrowed, err := listVisible(ctx, env, res.gvr)
		if apierrors.IsNotFound(err) {
			if res.required {
				return Notef("the Gateway API's HTTPRoute (v1) is not installed: no routes to check")
			}
			continue
		}
		if NotAllowed(err) {
			return fmt.Errorf("list %ss: %w", res.kind, err)
		}
		if err != nil {
			return Warnf("cannot list %ss: %v", res.kind, err)
		}
		if narrowed {
			scope = "routes checked in namespace " + env.ProxyNamespace + " only: you may not list them in every namespace"
		}
		for _, u := range list.Items {
			findings = append(findings, routeFindings(u.GetNamespace()+"/"+u.GetName(), u.Object)...)
		}
	}
	return warnAbout(findings, scope)
}

// routeFindings names what is wrong with a route according to the
// controller's status: a Service parent it did not accept, backends it
// could not resolve, a status older than the route, or no status at all.
func routeFindings(name string, obj map[string]any) []string {
	var r struct {
		Metadata metav1.ObjectMeta         `json:"metadata"`
		Spec     gatewayv1.CommonRouteSpec `json:"spec"`
		Status   gatewayv1.RouteStatus     `json:"status"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &r); err != nil {
		return []string{fmt.Sprintf("%s: cannot read it: %v", name, err)}
	}
	services := 0
	for _, p := range r.Spec.ParentRefs {
		if gamma.IsServiceParent(p) {
			services++
		}
	}
	if services == 0 {
		return nil // a Gateway's route: not the mesh's
	}
	var out []string
	ours := 0
	for _, p := range r.Status.Parents {
		if p.ControllerName != gamma.ControllerName {
			continue
		}
		ours++
		parent := "Service " + gamma.ParentNamespace(r.Metadata.Namespace, p.ParentRef) + "/" + string(p.ParentRef.Name)
		if p.ParentRef.Port != nil {
			parent += fmt.Sprintf(":%d", *p.ParentRef.Port)
		}
		for _, c := range p.Conditions {
			switch {
			case c.ObservedGeneration < r.Metadata.Generation:
				out = append(out, fmt.Sprintf("%s on %s: %s is of generation %d, the route is at %d (the controller has not caught up)", name, parent, c.Type, c.ObservedGeneration, r.Metadata.Generation))
			case c.Status != metav1.ConditionTrue:
				out = append(out, fmt.Sprintf("%s on %s: %s=%s (%s): %s", name, parent, c.Type, c.Status, c.Reason, c.Message))
			}
		}
	}
	if ours == 0 {
		out = append(out, fmt.Sprintf("%s: no status from %s for its Service parents", name, gamma.ControllerName))
	}
	return out
}

// listVisible lists gvr in every namespace or, for a user who may not and
// checks one namespace's proxies (check --proxy -n), in that namespace
// (narrowed).
func listVisible(ctx context.Context, env *Env, gvr schema.GroupVersionResource) (list *unstructured.UnstructuredList, narrowed bool, err error) {
	list, err = env.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{})
	if NotAllowed(err) && env.ProxyNamespace != "" {
		list, err = env.Dynamic.Resource(gvr).Namespace(env.ProxyNamespace).List(ctx, metav1.ListOptions{})
		return list, true, err
	}
	return list, false, err
}

func policiesSelectPods(ctx context.Context, env *Env) error {
	list, narrowed, err := listVisible(ctx, env, policyapi.GroupVersionResource)
	if apierrors.IsNotFound(err) {
		return Notef("the AuthorizationPolicy CRD is not installed (meshctl install adds it): no policies to check")
	}
	if NotAllowed(err) {
		return fmt.Errorf("list AuthorizationPolicies: %w", err)
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
	scope := ""
	if narrowed {
		scope = "AuthorizationPolicies checked in namespace " + env.ProxyNamespace + " only: you may not list them in every namespace"
	}
	return warnAbout(append(findings, policyFindings(policies, pods)...), scope)
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
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways && c.Name != meshnames.ProxyContainerName {
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
func warnAbout(findings []string, scope string) error {
	if len(findings) == 0 {
		if scope != "" {
			return Notef("%s", scope)
		}
		return nil
	}
	more := ""
	if len(findings) > maxFindings {
		more = fmt.Sprintf("; and %d more", len(findings)-maxFindings)
		findings = findings[:maxFindings]
	}
	if scope != "" {
		more += " (" + scope + ")"
	}
	return Warnf("%s%s", strings.Join(findings, "; "), more)
}
