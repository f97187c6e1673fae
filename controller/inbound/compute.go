package inbound

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Compute is pod's inbound policy, given its namespace's annotations, the
// AuthorizationPolicies of its namespace and the cluster's default. Values
// that cannot be used are reported in errs and never widen access: a
// default annotation that is no policy name is deny; a policy whose
// podSelector does not parse applies to every pod of its namespace but
// admits no one; a client that names no one (no valid SPIFFE ID or
// ServiceAccount) is left out of its policy (a policy left with no client
// admits no one); a policy whose port is no port of the pod is left out.
func Compute(pod *corev1.Pod, nsAnnotations map[string]string, policies []*policyapi.AuthorizationPolicy, trustDomain, clusterDefault string) (p api.InboundPolicy, errs []error) {
	annotation := func(key string) (string, string) {
		if v, ok := pod.Annotations[key]; ok {
			return v, "pod"
		}
		if v, ok := nsAnnotations[key]; ok {
			return v, "namespace"
		}
		return "", ""
	}
	p.Default = clusterDefault
	if v, from := annotation(meshnames.DefaultPolicyAnnotation); from != "" {
		if meshnames.ValidDefaultPolicy(v) {
			p.Default = v
		} else {
			p.Default = meshnames.DefaultDeny
			errs = append(errs, fmt.Errorf("%s annotation %s: %q is not all-unauthenticated, all-authenticated or deny; denying", from, meshnames.DefaultPolicyAnnotation, v))
		}
	}
	for _, limit := range [...]struct {
		key string
		dst *float64
	}{{meshnames.RateLimitAnnotation, &p.RateLimit}, {meshnames.RateLimitPerClientAnnotation, &p.RateLimitPerClient}} {
		key, dst := limit.key, limit.dst
		if v, from := annotation(key); from != "" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f <= 0 {
				errs = append(errs, fmt.Errorf("%s annotation %s: %q is not a number of requests per second above 0", from, key, v))
				continue
			}
			*dst = f
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if pr, ok := probeOf(pod, probe); ok && !slices.Contains(p.Probes, pr) {
				p.Probes = append(p.Probes, pr)
			}
		}
	}
	for _, ap := range policies {
		if ap.Namespace != pod.Namespace {
			continue
		}
		name := ap.Namespace + "/" + ap.Name
		sel, err := metav1.LabelSelectorAsSelector(&ap.Spec.PodSelector)
		admitNoOne := err != nil
		if err != nil {
			// Applied to every pod it may have meant, admitting no one, it
			// cannot open anything: over a deny default, its clients would
			// otherwise get into pods it was never meant for.
			errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: podSelector: %w; applying it to every pod of the namespace, admitting no one", name, err))
		} else if !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		rule := api.AuthorizationRule{Name: name, PathPrefixes: ap.Spec.PathPrefixes, Identities: []string{}}
		if ap.Spec.Port != nil {
			port, ok := containerPort(pod, *ap.Spec.Port)
			if !ok {
				errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: pod %s has no port %s", name, pod.Name, ap.Spec.Port.String()))
				continue
			}
			rule.Port = port
		}
		for i, from := range ap.Spec.From {
			id, err := clientID(from, ap.Namespace, trustDomain)
			if err != nil {
				// No client can ever present such an ID (clients' IDs are
				// parsed the same way), so leaving it out narrows nothing
				// and keeps the policy's other clients in.
				errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: from[%d]: %w; ignoring it", name, i, err))
				continue
			}
			rule.Identities = append(rule.Identities, id)
		}
		if admitNoOne {
			rule.Identities = []string{}
		}
		p.Rules = append(p.Rules, rule)
	}
	slices.SortFunc(p.Rules, func(a, b api.AuthorizationRule) int { return strings.Compare(a.Name, b.Name) })
	return p, errs
}

// clientID is the SPIFFE ID (or "*") a policy's client names; a
// ServiceAccount without a namespace is of the policy's.
func clientID(from policyapi.Client, namespace, trustDomain string) (string, error) {
	switch {
	case from.SPIFFEID == "*":
		return "*", nil
	case from.SPIFFEID != "":
		if _, err := spiffeid.Parse(from.SPIFFEID); err != nil {
			return "", err
		}
		return from.SPIFFEID, nil
	case from.ServiceAccount != nil && from.ServiceAccount.Name != "":
		if from.ServiceAccount.Namespace != "" {
			namespace = from.ServiceAccount.Namespace
		}
		id, err := spiffeid.New(trustDomain, namespace, from.ServiceAccount.Name)
		if err != nil {
			return "", fmt.Errorf("serviceAccount %s/%s: %w", namespace, from.ServiceAccount.Name, err)
		}
		return id.String(), nil
	}
	return "", fmt.Errorf("a client needs a spiffeID or a serviceAccount name")
}

// probeOf is a probe's port and, for HTTP probes, path.
func probeOf(pod *corev1.Pod, probe *corev1.Probe) (api.Probe, bool) {
	if probe == nil {
		return api.Probe{}, false
	}
	switch {
	case probe.HTTPGet != nil:
		port, ok := containerPort(pod, probe.HTTPGet.Port)
		if probe.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			return api.Probe{Port: port, TLS: true}, ok // TLS the proxy does not read: a connection
		}
		path, _, _ := strings.Cut(probe.HTTPGet.Path, "?")
		if path == "" {
			path = "/"
		}
		return api.Probe{Port: port, Path: path}, ok
	case probe.TCPSocket != nil:
		port, ok := containerPort(pod, probe.TCPSocket.Port)
		return api.Probe{Port: port}, ok
	case probe.GRPC != nil:
		// The kubelet calls the standard health service over HTTP/2.
		return api.Probe{Port: int(probe.GRPC.Port), Path: "/grpc.health.v1.Health/Check"}, true
	}
	return api.Probe{}, false
}

// containerPort resolves a port number or name against the pod's containers.
func containerPort(pod *corev1.Pod, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), p.IntValue() > 0 && p.IntValue() <= 65535
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}
