package cli

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
)

func fakeCRD(name string, conditions ...map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"group": "example"},
	}}
	if len(conditions) > 0 {
		conds := make([]any, len(conditions))
		for i, c := range conditions {
			conds[i] = c
		}
		u.Object["status"] = map[string]any{"conditions": conds}
	}
	return u
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{crdResource: "CustomResourceDefinitionList"}, objs...)
}

func TestInstallCreatesOnlyMissingGatewayAPICRDs(t *testing.T) {
	theirs := fakeCRD("httproutes.gateway.networking.k8s.io")
	client := fakeDynamic(theirs)
	var progress strings.Builder
	existing := map[string]string{"httproutes.gateway.networking.k8s.io": "v1.9.0", "widgets.example.com": ""}
	created, err := ensureGatewayAPI(context.Background(), client, existing, &progress)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.DeleteFunc(gatewayapi.Names(), func(n string) bool { return n == "httproutes.gateway.networking.k8s.io" })
	if !slices.Equal(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	got, err := client.Resource(crdResource).Get(context.Background(), "httproutes.gateway.networking.k8s.io", metav1.GetOptions{})
	if err != nil || got.Object["spec"].(map[string]any)["group"] != "example" {
		t.Errorf("the cluster's own HTTPRoute CRD was changed: %v %v", got, err)
	}
	for _, name := range want {
		if _, err := client.Resource(crdResource).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s was not created: %v", name, err)
		}
	}
	if !strings.Contains(progress.String(), "kept httproutes.gateway.networking.k8s.io (v1.9.0)") || !strings.Contains(progress.String(), "created gateways.gateway.networking.k8s.io") {
		t.Errorf("progress:\n%s", progress.String())
	}

	// Run again: everything is there, nothing is created.
	all := map[string]string{}
	for _, n := range gatewayapi.Names() {
		all[n] = gatewayapi.Version
	}
	created, err = ensureGatewayAPI(context.Background(), client, all, io.Discard)
	if err != nil || len(created) != 0 {
		t.Errorf("a second run created %v (%v)", created, err)
	}
	// A CRD someone creates between the listing and the creation is kept.
	created, err = ensureGatewayAPI(context.Background(), client, map[string]string{}, io.Discard)
	if err != nil || len(created) != 0 {
		t.Errorf("with a stale listing: created %v (%v), want none and no error", created, err)
	}
}

func TestEstablishedReadsTheConditions(t *testing.T) {
	for name, tc := range map[string]struct {
		crd        *unstructured.Unstructured
		ok, failed bool
		why        string
	}{
		"new":         {fakeCRD("a"), false, false, "no status yet"},
		"established": {fakeCRD("a", map[string]any{"type": "NamesAccepted", "status": "True"}, map[string]any{"type": "Established", "status": "True"}), true, false, "established"},
		"installing":  {fakeCRD("a", map[string]any{"type": "Established", "status": "False", "message": "Installing"}), false, false, "not established yet: Installing"},
		"conflict":    {fakeCRD("a", map[string]any{"type": "NamesAccepted", "status": "False", "message": "\"w\" is already in use"}), false, true, "its names are not accepted: \"w\" is already in use"},
	} {
		ok, why, failed := established(tc.crd)
		if ok != tc.ok || failed != tc.failed || why != tc.why {
			t.Errorf("%s: (%v, %q, %v), want (%v, %q, %v)", name, ok, why, failed, tc.ok, tc.why, tc.failed)
		}
	}
}

func TestWaitEstablishedWaitsAndGivesUpOnConflicts(t *testing.T) {
	ready := fakeCRD("ready.example", map[string]any{"type": "Established", "status": "True"})
	conflict := fakeCRD("conflict.example", map[string]any{"type": "NamesAccepted", "status": "False", "message": "taken"})
	client := fakeDynamic(ready, conflict)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitEstablished(ctx, client, []string{"ready.example"}, io.Discard); err != nil {
		t.Errorf("an established CRD: %v", err)
	}
	if err := waitEstablished(ctx, client, []string{"conflict.example"}, io.Discard); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("a conflicting CRD: %v, want an error at once", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel2()
	if err := waitEstablished(short, client, []string{"absent.example"}, io.Discard); err == nil || !strings.Contains(err.Error(), "absent.example") {
		t.Errorf("a CRD that never comes: %v", err)
	}
}

func TestUninstallDeletesOnlyMeshctlsCRD(t *testing.T) {
	client := fakeDynamic(fakeCRD(install.AuthorizationPolicyCRD), fakeCRD("httproutes.gateway.networking.k8s.io"))
	for i, want := range []bool{true, false} {
		found, err := deleteAuthorizationPolicyCRD(context.Background(), client)
		if err != nil || found != want {
			t.Errorf("delete #%d: %v, %v; want %v", i+1, found, err, want)
		}
	}
	if _, err := client.Resource(crdResource).Get(context.Background(), "httproutes.gateway.networking.k8s.io", metav1.GetOptions{}); err != nil {
		t.Errorf("the Gateway API CRD went too: %v", err)
	}
	got := gatewayCRDs(map[string]string{"tcproutes.gateway.networking.k8s.io": "", "httproutes.gateway.networking.k8s.io": "v1.6.3", install.AuthorizationPolicyCRD: "", "foo.example.com": ""})
	if !slices.Equal(got, []string{"httproutes.gateway.networking.k8s.io", "tcproutes.gateway.networking.k8s.io"}) {
		t.Errorf("gatewayCRDs = %v", got)
	}
}
