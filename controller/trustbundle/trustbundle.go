// Package trustbundle keeps a copy of the trust-roots ConfigMap in every
// namespace that has meshed pods: a pod can only mount a ConfigMap of its own
// namespace. A copy is made when the injector meshes the namespace's first
// pod, carries the CopyLabel, and follows the control plane's ConfigMap (a
// trust-anchor rotation reaches every namespace within seconds; the kubelet
// then refreshes the mounted directory).
//
// The name is the mesh's in every namespace: whatever a ConfigMap of that
// name holds outside the control plane's namespace is overwritten with the
// real bundle, on every change and every resync. Anyone who may create
// ConfigMaps in a namespace could otherwise choose the roots its meshed pods
// trust, by making the ConfigMap before the first pod is meshed.
//
// Still, a copy is only as good as its namespace: whoever may write
// ConfigMaps there can change it between two reconciliations (an update
// here is conditional on the cached version). So a copy is only a proxy's
// bootstrap, what its first connection to the controller is verified
// with; from then on the proxy trusts the bundle the controller sends with
// every certificate (package identity/client), never the copy.
package trustbundle

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// CopyLabel marks the copies this package owns.
const CopyLabel = "meshctl.io/trust-roots-copy"

// Copier makes and updates the copies.
type Copier struct {
	client    kubernetes.Interface
	namespace string // the control plane's, holding the source
	name      string // the ConfigMap's name, the same everywhere
	lister    listerscorev1.ConfigMapLister
	informer  cache.SharedIndexInformer
	log       *slog.Logger
	wake      chan struct{}
}

// NewFactory returns an informer factory that sees only ConfigMaps called
// name, in every namespace: all the Copier needs, at little memory.
func NewFactory(client kubernetes.Interface, name string, resync time.Duration) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))
}

// New registers the Copier's informer on factory (made by NewFactory);
// start the factory, wait for Synced, then Run.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, namespace, name string, log *slog.Logger) (*Copier, error) {
	c := &Copier{
		client: client, namespace: namespace, name: name, log: log,
		lister:   factory.Core().V1().ConfigMaps().Lister(),
		informer: factory.Core().V1().ConfigMaps().Informer(),
		wake:     make(chan struct{}, 1),
	}
	poke := func(any) { c.poke() }
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// poke wakes Run (buffered: one pending wake-up is enough).
func (c *Copier) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Synced reports whether the cache is filled.
func (c *Copier) Synced() bool { return c.informer.HasSynced() }

// Run brings every copy up to date whenever the source or a copy changes,
// and at every resync of the factory's informer, until ctx ends.
func (c *Copier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
		if err := c.syncAll(ctx); err != nil {
			c.log.Warn("updating the trust bundle copies", "error", err)
			// The informer's resync wakes us again; so does the next change.
		}
	}
}

// syncAll makes every ConfigMap of the name, in every namespace but the
// control plane's, an exact copy of the source.
func (c *Copier) syncAll(ctx context.Context) error {
	src, err := c.lister.ConfigMaps(c.namespace).Get(c.name)
	if err != nil {
		return nil // no source yet: nothing to copy
	}
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, cm := range all {
		if cm.Namespace == c.namespace || cm.Name != c.name {
			continue
		}
		if err := c.reconcile(ctx, src, cm); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", cm.Namespace, cm.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d copies not updated, first: %w", len(errs), errs[0])
	}
	return nil
}

// isCopy reports whether cm is exactly what the copier would make of src.
func isCopy(src, cm *corev1.ConfigMap) bool {
	return cm.Labels[CopyLabel] == "true" && maps.Equal(cm.Data, src.Data) && len(cm.BinaryData) == 0
}

// reconcile makes cm (from the cache) an exact copy of src: its data, no
// binary data, and the copy label. An immutable ConfigMap is replaced.
// Overwriting one that was not the copier's own is logged at warn: someone
// made it, and it may have named roots of their choosing.
func (c *Copier) reconcile(ctx context.Context, src, cm *corev1.ConfigMap) error {
	if isCopy(src, cm) {
		return nil
	}
	upd := cm.DeepCopy() // never mutate the cache
	upd.Data, upd.BinaryData = maps.Clone(src.Data), nil
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[CopyLabel] = "true"
	var err error
	if cm.Immutable != nil && *cm.Immutable {
		err = c.replace(ctx, cm, upd)
	} else {
		_, err = c.client.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "mesh-controller"})
	}
	if err != nil {
		return err
	}
	if cm.Labels[CopyLabel] != "true" {
		c.log.Warn("overwrote a trust bundle ConfigMap that was not the mesh's copy", "namespace", cm.Namespace, "name", cm.Name,
			"immutable", cm.Immutable != nil && *cm.Immutable)
	} else {
		c.log.Info("trust bundle copy updated", "namespace", cm.Namespace)
	}
	return nil
}

// replace deletes an immutable ConfigMap (only that very object: UID
// precondition) and creates the copy in its place.
func (c *Copier) replace(ctx context.Context, cur, upd *corev1.ConfigMap) error {
	uid := cur.UID
	err := c.client.CoreV1().ConfigMaps(cur.Namespace).Delete(ctx, cur.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the immutable ConfigMap: %w", err)
	}
	fresh := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: upd.Name, Namespace: upd.Namespace, Labels: upd.Labels},
		Data:       upd.Data,
	}
	_, err = c.client.CoreV1().ConfigMaps(cur.Namespace).Create(ctx, fresh, metav1.CreateOptions{FieldManager: "mesh-controller"})
	return err
}

// Ensure makes sure namespace has an exact, up-to-date copy (the injector
// calls it before meshing a pod there, only for namespaces that exist).
// It is idempotent: with the copy in place it makes no request. A
// ConfigMap of that name that is not the copy is overwritten.
func (c *Copier) Ensure(ctx context.Context, namespace string) error {
	if namespace == c.namespace {
		return nil
	}
	src, err := c.lister.ConfigMaps(c.namespace).Get(c.name)
	if err != nil {
		return fmt.Errorf("the trust bundle %s/%s: %w", c.namespace, c.name, err)
	}
	cur, err := c.lister.ConfigMaps(namespace).Get(c.name)
	if err == nil {
		return c.reconcile(ctx, src, cur)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: namespace, Labels: map[string]string{CopyLabel: "true"}},
		Data:       maps.Clone(src.Data),
	}
	_, err = c.client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "mesh-controller"})
	if apierrors.IsAlreadyExists(err) {
		// Made meanwhile (another replica, or our cache is behind): make
		// it the copy now, before the pod that needs it is admitted.
		cur, err := c.client.CoreV1().ConfigMaps(namespace).Get(ctx, c.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read %s/%s: %w", namespace, c.name, err)
		}
		return c.reconcile(ctx, src, cur)
	}
	if err == nil {
		c.log.Info("trust bundle copied", "namespace", namespace)
	}
	return err
}
