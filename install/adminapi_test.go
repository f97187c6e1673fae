package install

import (
	"encoding/base64"
	"slices"
	"testing"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestAdminAPIIsRegisteredAndGranted: the APIService points at a port the
// controller's Service has (and whose target the container names), comes
// after the Service, and trusts the webhook CA; the controller may read the
// front proxy's settings; the viewer role grants reading a pod's proxy and
// the operator role renewing its certificate too.
func TestAdminAPIIsRegisteredAndGranted(t *testing.T) {
	v := testValues()
	objs, err := Render(v)
	if err != nil {
		t.Fatal(err)
	}
	var svc *corev1.Service
	var apiSvc *unstructured.Unstructured
	roles := map[string]*rbacv1.ClusterRole{}
	var reader *rbacv1.RoleBinding
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			svc = o
		case *unstructured.Unstructured:
			if o.GetKind() == APIServiceKind {
				if svc == nil {
					t.Error("the APIService comes before the Service it points at")
				}
				apiSvc = o
			}
		case *rbacv1.ClusterRole:
			roles[o.Name] = o
		case *rbacv1.RoleBinding:
			if o.Name == AuthReaderBinding {
				reader = o
			}
		}
	}
	if apiSvc == nil || apiSvc.GetName() != "v1alpha1.admin.meshctl.io" || apiSvc.GetAPIVersion() != "apiregistration.k8s.io/v1" {
		t.Fatalf("APIService %v", apiSvc)
	}
	spec := apiSvc.Object["spec"].(map[string]any)
	ref := spec["service"].(map[string]any)
	if ref["name"] != meshnames.ServiceName || ref["namespace"] != "meshctl" || spec["group"] != "admin.meshctl.io" || spec["version"] != "v1alpha1" {
		t.Errorf("APIService spec %v", spec)
	}
	if ca, err := base64.StdEncoding.DecodeString(spec["caBundle"].(string)); err != nil || string(ca) != string(v.Webhook.CABundle) {
		t.Errorf("caBundle %q is not the webhook CA", spec["caBundle"])
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if int64(p.Port) == ref["port"].(int64) && p.TargetPort.StrVal == meshnames.AdminAPIPortName {
			found = true
		}
	}
	if !found {
		t.Errorf("the Service has no port %v targeting %s: %+v", ref["port"], meshnames.AdminAPIPortName, svc.Spec.Ports)
	}

	if reader == nil || reader.Namespace != "kube-system" || reader.RoleRef.Name != "extension-apiserver-authentication-reader" ||
		reader.Subjects[0].Name != meshnames.ServiceAccount || reader.Subjects[0].Namespace != "meshctl" {
		t.Errorf("front-proxy reader binding %+v", reader)
	}

	for _, c := range []struct {
		role, sub, verb string
		want            bool
	}{
		{meshnames.AdminViewerClusterRole, "pods/tap", "watch", true},
		{meshnames.AdminViewerClusterRole, "pods/tap", "get", true},
		{meshnames.AdminViewerClusterRole, "pods/identity", "get", true},
		{meshnames.AdminViewerClusterRole, "pods/destinations", "get", true},
		{meshnames.AdminViewerClusterRole, "pods/renew", "create", false},
		{meshnames.AdminOperatorClusterRole, "pods/tap", "watch", true},
		{meshnames.AdminOperatorClusterRole, "pods/renew", "create", true},
	} {
		r := roles[c.role]
		if r == nil {
			t.Fatalf("no ClusterRole %s", c.role)
		}
		if got := grants(r.Rules, meshnames.AdminGroup, c.sub, c.verb); got != c.want {
			t.Errorf("%s: %s %s = %v, want %v", c.role, c.verb, c.sub, got, c.want)
		}
	}
	// authz and routes read policies and routes, which view does not grant.
	for _, role := range []string{meshnames.AdminViewerClusterRole, meshnames.AdminOperatorClusterRole} {
		if !grants(roles[role].Rules, policyapi.Group, policyapi.Resource, "list") || !grants(roles[role].Rules, GatewayAPIGroup, "httproutes", "list") {
			t.Errorf("%s may not list AuthorizationPolicies and HTTPRoutes: %+v", role, roles[role].Rules)
		}
	}
}

// grants reports whether rules allow verb on resource in group.
func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}
