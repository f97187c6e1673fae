package cli

import (
	"context"
	"io"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/meshnames"
)

func partial(apiVersion, kind, ns, name string, labels map[string]string, manager string, op metav1.ManagedFieldsOperationType) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	if manager != "" {
		m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: manager, Operation: op}}
	}
	return m
}

// TestPruneDeletesOnlyWhatMeshctlAppliedAndNoLongerRenders: the stale PDB
// goes; a rendered object, another tool's object, what the controller
// wrote, a trust-bundle copy, something meshctl created without applying,
// and objects in other namespaces stay.
func TestPruneDeletesOnlyWhatMeshctlAppliedAndNoLongerRenders(t *testing.T) {
	ours := map[string]string{install.PartOfLabel: install.PartOfValue}
	apply := metav1.ManagedFieldsOperationApply
	scheme := metadatafake.NewTestScheme()
	for _, gvk := range []schema.GroupVersionKind{{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}, {Version: "v1", Kind: "ConfigMap"},
		{Version: "v1", Kind: "Secret"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}} {
		scheme.AddKnownTypeWithName(gvk, &metav1.PartialObjectMetadata{})
		scheme.AddKnownTypeWithName(gvk.GroupVersion().WithKind(gvk.Kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	client := metadatafake.NewSimpleMetadataClient(scheme,
		partial("policy/v1", "PodDisruptionBudget", "meshctl", "mesh-controller", ours, fieldManager, apply),
		partial("v1", "ConfigMap", "meshctl", meshnames.TrustRootsConfigMap, ours, fieldManager, apply),
		partial("v1", "ConfigMap", "meshctl", "someone-elses", map[string]string{"app": "x"}, fieldManager, apply),
		partial("v1", "ConfigMap", "meshctl", "controller-wrote", ours, meshnames.FieldManager, apply),
		partial("v1", "ConfigMap", "shop", "copy", map[string]string{install.PartOfLabel: install.PartOfValue, meshnames.TrustRootsCopyLabel: "true"}, fieldManager, apply),
		partial("v1", "Secret", "meshctl", "created", ours, fieldManager, metav1.ManagedFieldsOperationUpdate),
		partial("v1", "Secret", "other", "elsewhere", ours, fieldManager, apply),
		partial("rbac.authorization.k8s.io/v1", "ClusterRole", "", "meshctl-old-role", ours, fieldManager, apply),
	)
	rendered := []*unstructured.Unstructured{{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": meshnames.TrustRootsConfigMap, "namespace": "meshctl"}}}}
	refs, err := stale(context.Background(), client, "meshctl", rendered)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.String())
	}
	want := []string{"ClusterRole meshctl-old-role", "PodDisruptionBudget meshctl/mesh-controller"}
	if !slices.Equal(got, want) {
		t.Fatalf("stale %v, want %v", got, want)
	}
	if err := prune(context.Background(), client, "meshctl", refs, io.Discard); err != nil {
		t.Fatal(err)
	}
	again, err := stale(context.Background(), client, "meshctl", rendered)
	if err != nil || len(again) != 0 {
		t.Errorf("after prune, stale %v (%v)", again, err)
	}
}
