package install

import (
	"encoding/base64"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// Names of the aggregated admin API's objects (package adminapi).
const (
	// AuthReaderBinding is the RoleBinding in kube-system that lets the
	// controller read the API server's front-proxy settings.
	AuthReaderBinding = "meshctl-controller-auth-reader"
	// APIServiceKind is the kind of the object that registers the API;
	// uninstall deletes it before anything else, because an APIService whose
	// service is gone breaks discovery (and so kubectl) for everyone.
	APIServiceKind = "APIService"
	// APIServiceGroupVersion is its group and version.
	APIServiceGroupVersion = "apiregistration.k8s.io/v1"
)

// adminAPIRBAC lets the controller read the front proxy's settings (the
// built-in Role meshnames.AuthReaderRole, bound in kube-system), and defines
// the two ClusterRoles users are bound to: meshnames.AdminViewerClusterRole (tap,
// identity, destinations, policy; and reading AuthorizationPolicies and
// HTTPRoutes, for authz and routes) and meshnames.AdminOperatorClusterRole (those, and
// renew). The controller's SubjectAccessReviews come with its TokenReviews
// (rbac). Bound in a namespace, a ClusterRole grants its pods only.
func (v Values) adminAPIRBAC() []runtime.Object {
	view := rbacv1.PolicyRule{
		APIGroups: []string{meshnames.AdminGroup},
		Resources: []string{meshnames.AdminResource + "/" + meshnames.AdminTap, meshnames.AdminResource + "/" + meshnames.AdminIdentity, meshnames.AdminResource + "/" + meshnames.AdminDestinations, meshnames.AdminResource + "/" + meshnames.AdminPolicy},
		Verbs:     []string{meshnames.VerbGet, meshnames.VerbWatch},
	}
	// What authz and routes read, which the built-in ClusterRole view
	// does not aggregate: the mesh's policies and Gateway API routes.
	readPolicies := rbacv1.PolicyRule{
		APIGroups: []string{policyapi.Group},
		Resources: []string{policyapi.Resource},
		Verbs:     []string{meshnames.VerbGet, "list"},
	}
	readRoutes := rbacv1.PolicyRule{
		APIGroups: []string{GatewayAPIGroup},
		Resources: []string{"httproutes", "grpcroutes"},
		Verbs:     []string{meshnames.VerbGet, "list"},
	}
	renew := rbacv1.PolicyRule{
		APIGroups: []string{meshnames.AdminGroup},
		Resources: []string{meshnames.AdminResource + "/" + meshnames.AdminRenew},
		Verbs:     []string{meshnames.VerbCreate},
	}
	return []runtime.Object{
		&rbacv1.RoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: v.meta(meshnames.AuthConfigMapNamespace, AuthReaderBinding, nil),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meshnames.AuthReaderRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: meshnames.ServiceAccount, Namespace: v.Namespace}},
		},
		&rbacv1.ClusterRole{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: v.meta("", meshnames.AdminViewerClusterRole, nil),
			Rules:      []rbacv1.PolicyRule{view, readPolicies, readRoutes},
		},
		&rbacv1.ClusterRole{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: v.meta("", meshnames.AdminOperatorClusterRole, nil),
			Rules:      []rbacv1.PolicyRule{view, readPolicies, readRoutes, renew},
		},
	}
}

// apiService registers admin.meshctl.io/v1alpha1 with the API server's
// aggregator: the controller's Service on meshnames.AdminAPIPort, whose certificate
// (the webhook's) the webhook CA vouches for. The apiregistration Go types
// are not a dependency of this module; it is built as plain maps, which is
// what server-side apply sends.
func (v Values) apiService() *unstructured.Unstructured {
	meta := v.meta("", meshnames.AdminAPIServiceName, nil)
	labels := map[string]any{}
	for k, val := range meta.Labels {
		labels[k] = val
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": APIServiceGroupVersion,
		"kind":       APIServiceKind,
		"metadata":   map[string]any{"name": meta.Name, "labels": labels},
		"spec": map[string]any{
			"group":                meshnames.AdminGroup,
			"version":              meshnames.AdminVersion,
			"groupPriorityMinimum": int64(1000),
			"versionPriority":      int64(100),
			"service": map[string]any{
				"name": meshnames.ServiceName, "namespace": v.Namespace, "port": int64(meshnames.AdminAPIPort),
			},
			"caBundle": base64.StdEncoding.EncodeToString(v.Webhook.CABundle),
		},
	}}
}
