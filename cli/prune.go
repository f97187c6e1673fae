package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// prunable are the kinds of object install renders and an upgrade may
// stop rendering (the PodDisruptionBudget without --ha, say), with where
// to look for them: in the control plane's namespace, in kube-system, or
// cluster-wide. CRDs are not among them, ever: deleting one deletes every
// object of its kind. Nor is the namespace (always rendered).
var prunable = []struct {
	gvr   schema.GroupVersionResource
	kind  string
	scope pruneScope
}{
	{schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "ConfigMap", inControlPlane},
	{schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, "Secret", inControlPlane},
	{schema.GroupVersionResource{Version: "v1", Resource: "services"}, "Service", inControlPlane},
	{schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, "ServiceAccount", inControlPlane},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "Deployment", inControlPlane},
	{schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}, "PodDisruptionBudget", inControlPlane},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, "Role", inControlPlane},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, "RoleBinding", inControlPlane},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, "Role", inKubeSystem},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, "RoleBinding", inKubeSystem},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "ClusterRole", clusterWide},
	{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, "ClusterRoleBinding", clusterWide},
	{schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}, "MutatingWebhookConfiguration", clusterWide},
	{schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}, "APIService", clusterWide},
}

type pruneScope int

const (
	inControlPlane pruneScope = iota
	inKubeSystem
	clusterWide
)

// objectRef names one object.
type objectRef struct {
	group, kind, namespace, name string
}

func (r objectRef) String() string {
	if r.namespace == "" {
		return r.kind + " " + r.name
	}
	return r.kind + " " + r.namespace + "/" + r.name
}

func refOf(u *unstructured.Unstructured) objectRef {
	return objectRef{group: u.GroupVersionKind().Group, kind: u.GetKind(), namespace: u.GetNamespace(), name: u.GetName()}
}

// stale lists what an earlier install applied that rendered no longer
// has: objects labelled part of meshctl, applied by meshctl's field
// manager (what the controller makes, such as the trust bundle's copies
// and its leases, never is), of the prunable kinds.
func stale(ctx context.Context, client metadata.Interface, ns string, rendered []*unstructured.Unstructured) ([]objectRef, error) {
	want := map[objectRef]bool{}
	for _, u := range rendered {
		want[refOf(u)] = true
	}
	selector := metav1.ListOptions{LabelSelector: install.PartOfLabel + "=" + install.PartOfValue}
	var out []objectRef
	for _, p := range prunable {
		var list *metav1.PartialObjectMetadataList
		var err error
		switch p.scope {
		case inControlPlane:
			list, err = client.Resource(p.gvr).Namespace(ns).List(ctx, selector)
		case inKubeSystem:
			list, err = client.Resource(p.gvr).Namespace(meshnames.AuthConfigMapNamespace).List(ctx, selector)
		default:
			list, err = client.Resource(p.gvr).List(ctx, selector)
		}
		if err != nil {
			return nil, fmt.Errorf("list %s to find what this version no longer installs: %w", p.gvr.Resource, err)
		}
		for _, m := range list.Items {
			ref := objectRef{group: p.gvr.Group, kind: p.kind, namespace: m.Namespace, name: m.Name}
			if want[ref] || m.Labels[meshnames.TrustRootsCopyLabel] != "" || !appliedBy(m.ManagedFields, fieldManager) {
				continue
			}
			out = append(out, ref)
		}
	}
	slices.SortFunc(out, func(a, b objectRef) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		if c := cmp.Compare(a.namespace, b.namespace); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	return out, nil
}

// appliedBy says whether manager applied (server-side apply) some of an
// object's fields.
func appliedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// prune deletes refs, saying so on progress.
func prune(ctx context.Context, client metadata.Interface, ns string, refs []objectRef, progress io.Writer) error {
	for _, ref := range refs {
		for _, p := range prunable {
			if p.gvr.Group != ref.group || p.kind != ref.kind {
				continue
			}
			var err error
			if ref.namespace == "" {
				err = client.Resource(p.gvr).Delete(ctx, ref.name, metav1.DeleteOptions{})
			} else {
				err = client.Resource(p.gvr).Namespace(ref.namespace).Delete(ctx, ref.name, metav1.DeleteOptions{})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete %s, which this version no longer installs: %w", ref, err)
			}
			fmt.Fprintf(progress, "Deleted %s (this version no longer installs it)\n", ref)
			break
		}
	}
	return nil
}
