package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/pmezard/go-difflib/difflib"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/kubeapply"
)

// printDiff writes what applying objs would change, as unified diffs of
// each object as it is against the object as the API server's dry run
// would store it (so defaults and admission do not show as changes), and
// the objects stale would delete. Secrets' values are shown as digests.
// Nothing is changed in the cluster.
func printDiff(ctx context.Context, applier *kubeapply.Applier, objs []*unstructured.Unstructured, deletes []objectRef, w io.Writer) error {
	changed, same := 0, 0
	for _, obj := range objs {
		ri, err := applier.Resource(obj)
		if err != nil {
			return err
		}
		live, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			live = nil
		case err != nil:
			return fmt.Errorf("read %s: %w", refOf(obj), err)
		}
		would, err := applier.DryRun(ctx, obj)
		if err != nil {
			return fmt.Errorf("dry run: %w", err)
		}
		from, to := "", diffText(would)
		if live != nil {
			from = diffText(live)
		}
		if from == to {
			same++
			continue
		}
		changed++
		head := "~ " + refOf(obj).String()
		if live == nil {
			head = "+ " + refOf(obj).String() + " (new)"
		}
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(from), B: difflib.SplitLines(to),
			FromFile: "installed", ToFile: "upgraded", Context: 3,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n%s\n", head, text)
	}
	for _, ref := range deletes {
		fmt.Fprintf(w, "- %s (this version no longer installs it: deleted)\n", ref)
	}
	fmt.Fprintf(w, "%d objects would change, %d would be deleted, %d are unchanged. Nothing was changed (dry run).\n", changed, len(deletes), same)
	return nil
}

// diffText is obj as YAML without what the API server keeps for itself
// (managed fields, versions, status), its Secret values as digests.
func diffText(obj *unstructured.Unstructured) string {
	o := obj.DeepCopy()
	for _, f := range [][]string{
		{"metadata", "managedFields"}, {"metadata", "resourceVersion"}, {"metadata", "uid"},
		{"metadata", "creationTimestamp"}, {"metadata", "generation"}, {"status"},
		{"metadata", "annotations", "deployment.kubernetes.io/revision"},
	} {
		unstructured.RemoveNestedField(o.Object, f...)
	}
	if ann := o.GetAnnotations(); ann != nil && len(ann) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "annotations")
	}
	if o.GetKind() == "Secret" {
		// Values as digests: data (base64), stringData, and annotations
		// (kubectl's last-applied-configuration holds the whole Secret).
		digest(o.Object, true, "data")
		digest(o.Object, false, "stringData")
		digest(o.Object, false, "metadata", "annotations")
	}
	out, err := yaml.Marshal(o.Object)
	if err != nil {
		return fmt.Sprintf("(cannot print: %v)\n", err)
	}
	return string(out)
}

// digest replaces the values of the map at path in obj with their size and
// a short SHA-256 (of the decoded bytes when b64).
func digest(obj map[string]any, b64 bool, path ...string) {
	m, ok, _ := unstructured.NestedMap(obj, path...)
	if !ok {
		return
	}
	for k, v := range m {
		s, _ := v.(string)
		raw := []byte(s)
		if b64 {
			if d, err := base64.StdEncoding.DecodeString(s); err == nil {
				raw = d
			}
		}
		sum := sha256.Sum256(raw)
		m[k] = fmt.Sprintf("(%d bytes, sha256 %x…)", len(raw), sum[:6])
	}
	_ = unstructured.SetNestedMap(obj, m, path...)
}
