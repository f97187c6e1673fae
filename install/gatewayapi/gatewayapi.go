package gatewayapi

import (
	"embed"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshctl/meshctl/internal/kubeapply"
)

// Group is the Gateway API's API group.
const Group = "gateway.networking.k8s.io"

// BundleVersionAnnotation is on every Gateway API CRD: the release it is from.
const BundleVersionAnnotation = Group + "/bundle-version"

//go:embed crds/*.yaml
var files embed.FS

// order is the order CRDs are created in (and printed): the kinds routes
// refer to first.
var order = []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"}

// Names are the embedded CRDs' names, in order.
func Names() []string {
	out := make([]string, len(order))
	for i, plural := range order {
		out[i] = plural + "." + Group
	}
	return out
}

// CRDs decodes the embedded CRDs, in the order of Names. Every call returns
// new objects, free to change.
func CRDs() ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(order))
	for _, plural := range order {
		name := "crds/" + Group + "_" + plural + ".yaml"
		data, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("gateway api: %w", err)
		}
		objs, err := kubeapply.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("gateway api: %s: %w", name, err)
		}
		if len(objs) != 1 || objs[0].GetKind() != "CustomResourceDefinition" || objs[0].GetName() != plural+"."+Group {
			return nil, fmt.Errorf("gateway api: %s does not hold exactly the CRD %s.%s", name, plural, Group)
		}
		out = append(out, objs[0])
	}
	return out, nil
}

// Missing returns the CRDs whose names are not among existing (the names of
// the cluster's CRDs), keeping their order: those install creates. A CRD that
// exists is never touched, whatever its version: it may be newer, or another
// tool's.
func Missing(crds []*unstructured.Unstructured, existing []string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, c := range crds {
		if !slices.Contains(existing, c.GetName()) {
			out = append(out, c)
		}
	}
	return out
}
