package install

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// GatewayAPIGroup is the Gateway API's group (HTTPRoute, GRPCRoute).
const GatewayAPIGroup = "gateway.networking.k8s.io"

// ReviewerRoleName names the ClusterRole (and its binding) that lets the
// controller create TokenReviews (certificate issuance) and
// SubjectAccessReviews (checking a user's right before relaying admin
// calls), and nothing else: what system:auth-delegator grants, by name.
const ReviewerRoleName = "meshctl-controller-reviewer"

// rbac is the controller's least privilege: TokenReviews and
// SubjectAccessReviews (ReviewerRoleName); its own namespace's Secrets and
// ConfigMaps, read only; Services, EndpointSlices, Pods and Namespaces
// everywhere, read only; HTTPRoutes, GRPCRoutes (GAMMA) and
// AuthorizationPolicies everywhere, read only, plus the routes' status
// subresource (Accepted, ResolvedRefs), never their spec; and the
// trust-bundle copies:
// ConfigMaps named mesh-trust-roots only, everywhere (get, list and watch
// included: the controller's informer lists them with the field selector
// metadata.name=mesh-trust-roots, which is what lets RBAC apply resourceNames
// to list and watch), plus create, which RBAC cannot restrict by name.
func (v Values) rbac() []runtime.Object {
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: meshnames.ServiceAccount, Namespace: v.Namespace}}
	readOnly := []string{"get", "list", "watch"}
	return []runtime.Object{
		&rbacv1.ClusterRole{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: v.meta("", ClusterRoleName, nil),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{meshnames.TrustRootsConfigMap},
					Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
				{APIGroups: []string{GatewayAPIGroup}, Resources: []string{"httproutes", "grpcroutes"}, Verbs: readOnly},
				{APIGroups: []string{GatewayAPIGroup}, Resources: []string{"httproutes/status", "grpcroutes/status"}, Verbs: []string{"update", "patch"}},
				{APIGroups: []string{policyapi.Group}, Resources: []string{policyapi.Resource}, Verbs: readOnly},
			},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: v.meta("", ClusterRoleName, nil),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleName},
			Subjects:   subject,
		},
		&rbacv1.ClusterRole{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: v.meta("", ReviewerRoleName, nil),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: v.meta("", ReviewerRoleName, nil),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ReviewerRoleName},
			Subjects:   subject,
		},
		&rbacv1.Role{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
			ObjectMeta: v.meta(v.Namespace, meshnames.ServiceAccount, nil),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: readOnly},
				// The replicas elect the route-status writer: its Lease only
				// (create cannot be restricted by name).
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}, ResourceNames: []string{meshnames.RouteStatusLease}},
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: v.meta(v.Namespace, meshnames.ServiceAccount, nil),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meshnames.ServiceAccount},
			Subjects:   subject,
		},
	}
}
