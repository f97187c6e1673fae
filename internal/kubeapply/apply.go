// Package kubeapply applies Kubernetes manifests with server-side apply, the
// way `kubectl apply --server-side` does, from YAML or JSON documents.
package kubeapply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Decode splits a multi-document YAML or JSON stream into objects, skipping
// empty documents.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode manifest %d: %w", len(objs)+1, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("manifest %d has no kind or name", len(objs)+1)
		}
		objs = append(objs, u)
	}
}

// Applier applies objects through the dynamic client, finding each kind's
// resource by discovery.
type Applier struct {
	client dynamic.Interface
	mapper meta.RESTMapper
	// FieldManager names the owner of the applied fields.
	FieldManager string
}

// New returns an Applier for the cluster cfg points at.
func New(cfg *rest.Config, fieldManager string) (*Applier, error) {
	if fieldManager == "" {
		return nil, errors.New("a field manager is required")
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return &Applier{client: client, mapper: mapper, FieldManager: fieldManager}, nil
}

// Apply applies every object in order, taking ownership of conflicting fields.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, obj := range objs {
		if _, err := a.apply(ctx, obj, nil); err != nil {
			return err
		}
	}
	return nil
}

// DryRun applies obj with the API server's dry run and returns the object
// as it would be stored (defaults filled in, admission run), storing
// nothing.
func (a *Applier) DryRun(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return a.apply(ctx, obj, []string{metav1.DryRunAll})
}

func (a *Applier) apply(ctx context.Context, obj *unstructured.Unstructured, dryRun []string) (*unstructured.Unstructured, error) {
	ri, err := a.Resource(obj)
	if err != nil {
		return nil, err
	}
	out, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: a.FieldManager, Force: true, DryRun: dryRun})
	if err != nil {
		return nil, fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return out, nil
}

// Resource is the client of obj's resource (in obj's namespace, "default"
// when it has none, for a namespaced kind).
func (a *Applier) Resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("find resource for %s: %w", gvk, err)
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.client.Resource(mapping.Resource), nil
	}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	return a.client.Resource(mapping.Resource).Namespace(ns), nil
}
