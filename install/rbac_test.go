package install

import (
	"slices"
	"testing"

	"github.com/meshctl/meshctl/internal/meshnames"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// allowed reports whether rules grant verb on a core resource named name
// ("" for a request without a name, such as a plain list).
func allowed(rules []rbacv1.PolicyRule, group, resource, verb, name string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

func TestControllerRightsAreNarrow(t *testing.T) {
	roles := map[string]*rbacv1.ClusterRole{}
	var bindings []*rbacv1.ClusterRoleBinding
	for _, o := range testValues().WithDefaults().rbac() {
		switch r := o.(type) {
		case *rbacv1.ClusterRole:
			roles[r.Name] = r
		case *rbacv1.ClusterRoleBinding:
			bindings = append(bindings, r)
		}
	}
	for _, b := range bindings {
		if roles[b.RoleRef.Name] == nil {
			t.Errorf("ClusterRoleBinding %s binds %s, a role install does not define (system:auth-delegator grants more than TokenReviews)", b.Name, b.RoleRef.Name)
		}
	}
	main := roles[ClusterRoleName].Rules
	cm := meshnames.TrustRootsConfigMap
	// ConfigMaps cluster-wide: only those of the bundle's name, except
	// create, which RBAC cannot restrict by name.
	for _, verb := range []string{"get", "list", "watch", "update", "patch", "delete"} {
		if !allowed(main, "", "configmaps", verb, cm) {
			t.Errorf("the controller may not %s ConfigMaps named %s", verb, cm)
		}
		if allowed(main, "", "configmaps", verb, "other") || allowed(main, "", "configmaps", verb, "") {
			t.Errorf("the controller may %s any ConfigMap cluster-wide", verb)
		}
	}
	if !allowed(main, "", "configmaps", "create", "") {
		t.Error("the controller may not create the trust bundle copies")
	}
	if allowed(main, "", "secrets", "get", "") || allowed(main, "", "secrets", "list", "") {
		t.Error("the controller may read Secrets cluster-wide")
	}
	// Routes: read them all, write only their status (never their spec).
	for _, resource := range []string{"httproutes", "grpcroutes"} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allowed(main, GatewayAPIGroup, resource, verb, "") {
				t.Errorf("the controller may not %s %s", verb, resource)
			}
		}
		for _, verb := range []string{"update", "patch"} {
			if !allowed(main, GatewayAPIGroup, resource+"/status", verb, "") {
				t.Errorf("the controller may not %s %s/status", verb, resource)
			}
			if allowed(main, GatewayAPIGroup, resource, verb, "") {
				t.Errorf("the controller may %s %s themselves, not only their status", verb, resource)
			}
		}
	}
	reviewer := roles[ReviewerRoleName]
	if reviewer == nil {
		t.Fatalf("no ClusterRole %s", ReviewerRoleName)
	}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
	if len(reviewer.Rules) != len(want) {
		t.Fatalf("reviewer rules %+v, want %+v", reviewer.Rules, want)
	}
	for i := range want {
		if !slices.Equal(reviewer.Rules[i].APIGroups, want[i].APIGroups) || !slices.Equal(reviewer.Rules[i].Resources, want[i].Resources) ||
			!slices.Equal(reviewer.Rules[i].Verbs, want[i].Verbs) || len(reviewer.Rules[i].ResourceNames) != 0 {
			t.Errorf("reviewer rule %d is %+v, want %+v", i, reviewer.Rules[i], want[i])
		}
	}
}

// TestControllerMayHoldOnlyItsOwnLease: in its namespace the controller
// may create Leases (RBAC cannot name what is created) but read and renew
// only the route-status Lease, so it cannot take over other components'
// elections.
func TestControllerMayHoldOnlyItsOwnLease(t *testing.T) {
	var rules []rbacv1.PolicyRule
	for _, o := range testValues().WithDefaults().rbac() {
		if r, ok := o.(*rbacv1.Role); ok {
			rules = append(rules, r.Rules...)
		}
	}
	for _, verb := range []string{"get", "update"} {
		if !allowed(rules, "coordination.k8s.io", "leases", verb, meshnames.RouteStatusLease) {
			t.Errorf("the controller may not %s its Lease %s", verb, meshnames.RouteStatusLease)
		}
		if allowed(rules, "coordination.k8s.io", "leases", verb, "kube-scheduler") {
			t.Errorf("the controller may %s any Lease", verb)
		}
	}
	if !allowed(rules, "coordination.k8s.io", "leases", "create", "") {
		t.Error("the controller may not create its Lease")
	}
	if allowed(rules, "coordination.k8s.io", "leases", "delete", meshnames.RouteStatusLease) {
		t.Error("the controller may delete Leases")
	}
}

func TestWebhookSkipsSystemAndOptedOutPods(t *testing.T) {
	v := testValues().WithDefaults()
	wh := v.webhookConfiguration().Webhooks[0]
	matches := func(sel *metav1.LabelSelector, lbls map[string]string) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		return s.Matches(labels.Set(lbls))
	}
	for ns, want := range map[string]bool{"kube-system": false, v.Namespace: false, "shop": true} {
		if got := matches(wh.NamespaceSelector, map[string]string{corev1.LabelMetadataName: ns}); got != want {
			t.Errorf("namespace %s sent to the webhook: %v, want %v", ns, got, want)
		}
	}
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{{nil, true}, {map[string]string{"meshctl.io/inject": "enabled"}, true}, {map[string]string{"meshctl.io/inject": "disabled"}, false}} {
		if got := matches(wh.ObjectSelector, tc.labels); got != tc.want {
			t.Errorf("pod labelled %v sent to the webhook: %v, want %v", tc.labels, got, tc.want)
		}
	}
	if *wh.FailurePolicy != admissionregistrationv1.Ignore {
		t.Error("the webhook must fail open (Ignore)")
	}
}
