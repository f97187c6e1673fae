package inbound

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

func testPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{"app": "web"}, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:           "web",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9000}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9000)}}},
		}}},
	}
}

func policy(name string, sel map[string]string, port *intstr.IntOrString, from ...policyapi.Client) *policyapi.AuthorizationPolicy {
	return &policyapi.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec:       policyapi.AuthorizationPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, Port: port, From: from},
	}
}

func TestComputeResolvesPoliciesProbesAndAnnotations(t *testing.T) {
	http := intstr.FromString("http")
	missing := intstr.FromString("grpc")
	policies := []*policyapi.AuthorizationPolicy{
		policy("web-from-client", map[string]string{"app": "web"}, &http,
			policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "client"}},
			policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "ops", Namespace: "tools"}},
			policyapi.Client{SPIFFEID: "spiffe://cluster.local/ns/x/sa/y"}),
		policy("other-app", map[string]string{"app": "db"}, nil, policyapi.Client{SPIFFEID: "*"}),
		policy("all-ports", nil, nil, policyapi.Client{SPIFFEID: "*"}),
		policy("no-such-port", nil, &missing, policyapi.Client{SPIFFEID: "*"}),
	}
	got, errs := Compute(testPod(map[string]string{meshnames.RateLimitAnnotation: "100"}),
		map[string]string{meshnames.DefaultPolicyAnnotation: "deny", meshnames.RateLimitPerClientAnnotation: "10"},
		policies, "cluster.local", meshnames.DefaultAllUnauthenticated)
	want := api.InboundPolicy{
		Default: "deny",
		Rules: []api.AuthorizationRule{
			{Name: "shop/all-ports", Identities: []string{"*"}},
			{Name: "shop/web-from-client", Port: 8080, Identities: []string{
				"spiffe://cluster.local/ns/shop/sa/client", "spiffe://cluster.local/ns/tools/sa/ops", "spiffe://cluster.local/ns/x/sa/y"}},
		},
		Probes:             []api.Probe{{Port: 8080, Path: "/ready"}, {Port: 9000}},
		RateLimit:          100,
		RateLimitPerClient: 10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if len(errs) != 1 {
		t.Errorf("errors %v, want the one about the missing port", errs)
	}
}

func TestComputeDefaults(t *testing.T) {
	// The pod's annotation wins over the namespace's; a bad value is reported and ignored.
	got, _ := Compute(testPod(map[string]string{meshnames.DefaultPolicyAnnotation: "all-authenticated"}),
		map[string]string{meshnames.DefaultPolicyAnnotation: "deny"}, nil, "cluster.local", "all-unauthenticated")
	if got.Default != "all-authenticated" {
		t.Errorf("default %q, want the pod's", got.Default)
	}
	got, errs := Compute(testPod(map[string]string{meshnames.DefaultPolicyAnnotation: "maybe", meshnames.RateLimitAnnotation: "-3"}),
		nil, nil, "cluster.local", "deny")
	if got.Default != "deny" || got.RateLimit != 0 || len(errs) != 2 {
		t.Errorf("bad annotations: %+v, errors %v", got, errs)
	}
}

// TestPoliciesThatCannotBeUsedNeverWidenAccess: a default annotation that
// is no policy, over a permissive cluster default, denies; a policy whose
// podSelector does not parse still covers the pod.
func TestPoliciesThatCannotBeUsedNeverWidenAccess(t *testing.T) {
	got, errs := Compute(testPod(map[string]string{meshnames.DefaultPolicyAnnotation: "denny"}), nil, nil, "cluster.local", meshnames.DefaultAllUnauthenticated)
	if got.Default != meshnames.DefaultDeny || len(errs) != 1 {
		t.Errorf("a misspelt default over all-unauthenticated: %q (errors %v), want deny", got.Default, errs)
	}
	http := intstr.FromString("http")
	bad := policy("bad-selector", nil, &http, policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "client"}})
	bad.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}}
	got, errs = Compute(testPod(nil), nil, []*policyapi.AuthorizationPolicy{bad}, "cluster.local", meshnames.DefaultAllUnauthenticated)
	if len(got.Rules) != 1 || got.Rules[0].Port != 8080 || len(errs) != 1 {
		t.Errorf("a policy with a bad selector: rules %+v (errors %v); want it to cover port 8080", got.Rules, errs)
	}
}
