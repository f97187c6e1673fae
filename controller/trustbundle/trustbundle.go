// Package trustbundle keeps a copy of the trust-roots ConfigMap in every
// namespace that has meshed pods: a pod can only mount a ConfigMap of its own
// namespace. A copy is made when the injector meshes the namespace's first
// pod, carries the CopyLabel, and follows the control plane's ConfigMap (a
// trust-anchor rotation reaches every namespace within seconds; the kubelet
// then refreshes the mounted directory). Copies without the label (made by
// hand) are left alone.
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
	poke := func(any) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Synced reports whether the cache is filled.
func (c *Copier) Synced() bool { return c.informer.HasSynced() }

// Run brings every copy up to date whenever the source or a copy changes,
// until ctx ends.
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

// syncAll updates every labelled copy whose data differs from the source.
func (c *Copier) syncAll(ctx context.Context) error {
	src, err := c.lister.ConfigMaps(c.namespace).Get(c.name)
	if err != nil {
		return nil // no source yet: nothing to copy
	}
	copies, err := c.lister.List(labels.SelectorFromSet(labels.Set{CopyLabel: "true"}))
	if err != nil {
		return err
	}
	var errs []error
	for _, cm := range copies {
		if cm.Namespace == c.namespace || cm.Name != c.name || maps.Equal(cm.Data, src.Data) {
			continue
		}
		upd := cm.DeepCopy() // never mutate the cache
		upd.Data = maps.Clone(src.Data)
		if _, err := c.client.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "mesh-controller"}); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", cm.Namespace, cm.Name, err))
			continue
		}
		c.log.Info("trust bundle copy updated", "namespace", cm.Namespace)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d copies not updated, first: %w", len(errs), errs[0])
	}
	return nil
}

// Ensure makes sure namespace has an up-to-date copy (the injector calls it
// before meshing a pod there). A ConfigMap of that name made by someone
// else is left as it is.
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
		if cur.Labels[CopyLabel] != "true" || maps.Equal(cur.Data, src.Data) {
			return nil
		}
		upd := cur.DeepCopy()
		upd.Data = maps.Clone(src.Data)
		_, err = c.client.CoreV1().ConfigMaps(namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "mesh-controller"})
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: namespace, Labels: map[string]string{CopyLabel: "true"}},
		Data:       maps.Clone(src.Data),
	}
	_, err = c.client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "mesh-controller"})
	if apierrors.IsAlreadyExists(err) {
		return nil // made meanwhile (another replica, or our cache is behind)
	}
	if err == nil {
		c.log.Info("trust bundle copied", "namespace", namespace)
	}
	return err
}
