package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
)

// crdResource is CustomResourceDefinitions, for the dynamic and metadata
// clients (the apiextensions clientset is not a dependency).
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installedCRDs returns the cluster's CRD names with their Gateway API
// bundle version ("" for other CRDs), reading only metadata.
func installedCRDs(ctx context.Context, client metadata.Interface) (map[string]string, error) {
	list, err := client.Resource(crdResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the cluster's CRDs: %w", err)
	}
	out := make(map[string]string, len(list.Items))
	for _, c := range list.Items {
		out[c.Name] = c.Annotations[gatewayapi.BundleVersionAnnotation]
	}
	return out, nil
}

// ensureGatewayAPI creates the Gateway API CRDs missing from existing (as
// installedCRDs returns) and says which it kept. It returns the names it
// created. A CRD someone creates meanwhile is kept too, never overwritten.
func ensureGatewayAPI(ctx context.Context, client dynamic.Interface, existing map[string]string, progress io.Writer) ([]string, error) {
	crds, err := gatewayapi.CRDs()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(existing))
	for name := range existing {
		names = append(names, name)
	}
	missing := gatewayapi.Missing(crds, names)
	fmt.Fprintf(progress, "Gateway API CRDs (%s, standard channel): %d of %d missing\n", gatewayapi.Version, len(missing), len(crds))
	for _, c := range crds {
		if v, ok := existing[c.GetName()]; ok {
			if v == "" {
				v = "unknown version"
			}
			fmt.Fprintf(progress, "  kept %s (%s): existing Gateway API CRDs are never changed\n", c.GetName(), v)
		}
	}
	var created []string
	for _, c := range missing {
		_, err := client.Resource(crdResource).Create(ctx, c, metav1.CreateOptions{FieldManager: fieldManager})
		switch {
		case apierrors.IsAlreadyExists(err):
			fmt.Fprintf(progress, "  kept %s: created meanwhile by someone else\n", c.GetName())
		case err != nil:
			return created, fmt.Errorf("create CRD %s: %w", c.GetName(), err)
		default:
			created = append(created, c.GetName())
			fmt.Fprintf(progress, "  created %s\n", c.GetName())
		}
	}
	return created, nil
}

// established reports whether a CRD's API is served, or why not; a CRD whose
// names conflict with another's never will be (failed).
func established(crd *unstructured.Unstructured) (ok bool, why string, failed bool) {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	why = "no status yet"
	for _, c := range conds {
		m, _ := c.(map[string]any)
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		msg, _ := m["message"].(string)
		switch {
		case typ == "Established" && status == "True":
			return true, "established", false
		case typ == "NamesAccepted" && status == "False":
			return false, "its names are not accepted: " + msg, true
		case typ == "Established":
			why = "not established yet"
			if msg != "" {
				why += ": " + msg
			}
		}
	}
	return false, why, false
}

// waitEstablished waits until every named CRD's API is served: objects of
// its kind can be created and watched from then on.
func waitEstablished(ctx context.Context, client dynamic.Interface, names []string, progress io.Writer) error {
	for _, name := range names {
		last := ""
		err := poll(ctx, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
			crd, err := client.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			ok, why, failed := established(crd)
			last = why
			if failed {
				return false, errors.New(why)
			}
			return ok, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s is not established (%s): %w", name, last, err)
		}
		fmt.Fprintf(progress, "  CRD %s established\n", name)
	}
	return nil
}

// deleteAuthorizationPolicyCRD deletes meshctl's CRD, and with it (the API
// server's doing) every AuthorizationPolicy. It reports whether there was one.
func deleteAuthorizationPolicyCRD(ctx context.Context, client dynamic.Interface) (bool, error) {
	err := client.Resource(crdResource).Delete(ctx, install.AuthorizationPolicyCRD, metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("delete CRD %s: %w", install.AuthorizationPolicyCRD, err)
	}
	return true, nil
}
