package gatewayapi

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestEmbeddedCRDsDecodeAndMatchTheVersion(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range crds {
		names = append(names, c.GetName())
		if c.GetAPIVersion() != "apiextensions.k8s.io/v1" || c.GetKind() != "CustomResourceDefinition" {
			t.Errorf("%s is a %s %s", c.GetName(), c.GetAPIVersion(), c.GetKind())
		}
		if v := c.GetAnnotations()[BundleVersionAnnotation]; v != Version {
			t.Errorf("%s is from Gateway API %q, want %q (go generate ./install/gatewayapi)", c.GetName(), v, Version)
		}
		if ch := c.GetAnnotations()[Group+"/channel"]; ch != "standard" {
			t.Errorf("%s is from the %q channel, want standard", c.GetName(), ch)
		}
		if g, _, _ := unstructured.NestedString(c.Object, "spec", "group"); g != Group {
			t.Errorf("%s: group %q", c.GetName(), g)
		}
		if _, found := c.Object["status"]; found {
			t.Errorf("%s carries a status, which server-side apply and create refuse to set", c.GetName())
		}
	}
	if !slices.Equal(names, Names()) {
		t.Errorf("decoded %v, want %v", names, Names())
	}
	if !slices.Contains(names, "httproutes.gateway.networking.k8s.io") {
		t.Error("no HTTPRoute CRD")
	}
	// HTTPRoute v1 is what meshctl reads.
	versions, _, _ := unstructured.NestedSlice(crds[2].Object, "spec", "versions")
	served := false
	for _, v := range versions {
		m := v.(map[string]any)
		if m["name"] == "v1" && m["served"] == true {
			served = true
		}
	}
	if !served {
		t.Error("the HTTPRoute CRD does not serve v1")
	}
	// Each call decodes afresh: changing one result changes no other.
	crds[0].SetName("changed")
	again, _ := CRDs()
	if again[0].GetName() != Names()[0] {
		t.Error("CRDs returned shared objects")
	}
}

func TestMissingKeepsExistingCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	all := Names()
	for name, tc := range map[string]struct {
		existing []string
		want     []string
	}{
		"empty cluster":        {nil, all},
		"all there":            {all, nil},
		"some there":           {[]string{"gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io", "widgets.example.com"}, []string{all[0], all[3], all[4]}},
		"unrelated CRDs":       {[]string{"httproutes.example.com", "authorizationpolicies.policy.meshctl.io"}, all},
		"only referencegrants": {[]string{"referencegrants.gateway.networking.k8s.io"}, all[:4]},
	} {
		var got []string
		for _, c := range Missing(crds, tc.existing) {
			got = append(got, c.GetName())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: missing %v, want %v", name, got, tc.want)
		}
	}
}
