package install

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshctl/meshctl/internal/kubeapply"
	"github.com/meshctl/meshctl/internal/policyapi"
)

func TestAuthorizationPolicyCRDMatchesGolden(t *testing.T) {
	got, err := YAML([]runtime.Object{testValues().WithDefaults().authorizationPolicyCRD()})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "authorizationpolicy-crd.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the CRD differs from %s (go test ./install -update to accept):\n%s", golden, got)
	}
	decoded, err := kubeapply.Decode(got)
	if err != nil || len(decoded) != 1 || decoded[0].GetName() != AuthorizationPolicyCRD {
		t.Fatalf("the golden CRD decodes to %v (%v)", decoded, err)
	}
}

// TestCRDSchemaFollowsTheGoTypes walks policyapi's types and the schema
// together: every JSON field is in the schema and every schema property is a
// JSON field, at every level.
func TestCRDSchemaFollowsTheGoTypes(t *testing.T) {
	crd := testValues().WithDefaults().authorizationPolicyCRD()
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) != 1 {
		t.Fatalf("%d versions, want 1", len(versions))
	}
	root, _, _ := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema")
	spec := root["properties"].(schema)["spec"].(schema)
	compareSchema(t, "spec", reflect.TypeFor[policyapi.AuthorizationPolicySpec](), spec)

	if g, _, _ := unstructured.NestedString(crd.Object, "spec", "group"); g != policyapi.Group {
		t.Errorf("group %q, want %q", g, policyapi.Group)
	}
	if n := crd.GetName(); n != policyapi.GroupVersionResource.GroupResource().String() {
		t.Errorf("CRD name %q, want %q", n, policyapi.GroupVersionResource.GroupResource())
	}
	if req, _, _ := unstructured.NestedStringSlice(spec, "required"); !slices.Equal(req, []string{"from"}) {
		t.Errorf("spec requires %v, want [from]", req)
	}
}

func compareSchema(t *testing.T, path string, typ reflect.Type, s schema) {
	t.Helper()
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
		if s["type"] == "array" {
			s = s["items"].(schema)
		}
	}
	if typ.Kind() != reflect.Struct || typ.PkgPath() == "k8s.io/apimachinery/pkg/util/intstr" {
		return
	}
	if s["type"] != "object" {
		t.Errorf("%s: schema type %v, want object for %s", path, s["type"], typ)
		return
	}
	props, _ := s["properties"].(schema)
	var fields []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields = append(fields, name)
		sub, ok := props[name].(schema)
		if !ok {
			t.Errorf("%s.%s (%s) is not in the schema", path, name, f.Type)
			continue
		}
		compareSchema(t, path+"."+name, f.Type, sub)
	}
	var names []string
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(fields)
	sort.Strings(names)
	if !slices.Equal(fields, names) {
		t.Errorf("%s: schema properties %v, Go fields %v", path, names, fields)
	}
}

func TestRenderAppliesTheCRDFirst(t *testing.T) {
	objs, err := Render(testValues())
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	if us[0].GetKind() != CRDKind || us[0].GetName() != AuthorizationPolicyCRD {
		t.Errorf("first object %s %s, want the AuthorizationPolicy CRD", us[0].GetKind(), us[0].GetName())
	}
	for _, u := range us[1:] {
		if u.GetKind() == CRDKind {
			t.Errorf("CRD %s is not first", u.GetName())
		}
	}
	// Converting must not change what Render returned (it is copied).
	us[0].SetName("changed")
	again, _ := Unstructured(objs)
	if again[0].GetName() != AuthorizationPolicyCRD {
		t.Error("Unstructured returned the rendered object itself, not a copy")
	}
}

func TestControllerMayReadRoutesAndPolicies(t *testing.T) {
	var role *rbacv1.ClusterRole
	for _, o := range testValues().WithDefaults().rbac() {
		if r, ok := o.(*rbacv1.ClusterRole); ok && r.Name == ClusterRoleName {
			role = r
		}
	}
	for _, want := range []struct{ group, resource string }{{GatewayAPIGroup, "httproutes"}, {policyapi.Group, policyapi.Resource}} {
		ok := false
		for _, r := range role.Rules {
			if slices.Equal(r.APIGroups, []string{want.group}) && slices.Contains(r.Resources, want.resource) &&
				slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("the ClusterRole does not let the controller get, list and watch %s.%s", want.resource, want.group)
		}
	}
}

func TestDefaultInboundPolicyIsAControllerArgument(t *testing.T) {
	for set, want := range map[string]string{"": "all-unauthenticated", "deny": "deny", "all-authenticated": "all-authenticated"} {
		v := testValues()
		v.DefaultInboundPolicy = set
		objs, err := Render(v)
		if err != nil {
			t.Fatal(err)
		}
		us, _ := Unstructured(objs)
		for _, u := range us {
			if u.GetKind() != "Deployment" {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
			if !slices.Contains(args, "--default-inbound-policy="+want) {
				t.Errorf("DefaultInboundPolicy %q: controller args %v lack --default-inbound-policy=%s", set, args, want)
			}
		}
	}
	v := testValues()
	v.DefaultInboundPolicy = "allow"
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "all-unauthenticated, all-authenticated or deny") {
		t.Errorf("an unknown default inbound policy: %v", err)
	}
}
