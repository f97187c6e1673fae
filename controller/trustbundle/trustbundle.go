// Package trustbundle keeps a copy of the trust-roots ConfigMap in every
// namespace that has meshed pods: a pod can only mount a ConfigMap of its own
// namespace. A copy is made when the injector meshes the namespace's first
// pod, carries the CopyLabel, and follows the control plane's ConfigMap (a
// trust-anchor rotation reaches every namespace within seconds; the kubelet
// then refreshes the mounted directory). Every change queues the namespaces
// concerned in a rate-limited work queue: a copy that fails is retried with
// backoff, not left until the next resync.
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
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// CopyLabel marks the copies this package owns.
const CopyLabel = meshnames.TrustRootsCopyLabel

// queueName names the Copier's work queue (in the workqueue metrics).
const queueName = "trust-bundle-copies"

// workers is how many copies Run makes at once.
const workers = 2

// Copier makes and updates the copies. Its work queue holds namespaces
// whose copy is to be checked; a failed copy is retried with backoff.
type Copier struct {
	client    kubernetes.Interface
	namespace string // the control plane's, holding the source
	name      string // the ConfigMap's name, the same everywhere
	lister    listerscorev1.ConfigMapLister
	informer  cache.SharedIndexInformer
	log       *slog.Logger
	queue     workqueue.TypedRateLimitingInterface[string] // namespaces
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
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: queueName}),
	}
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue, UpdateFunc: func(_, n any) { c.enqueue(n) }, DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("watch the trust bundle ConfigMaps: %w", err)
	}
	return c, nil
}

// enqueue queues the namespace of obj, a ConfigMap of the name (or its
// tombstone); for the source, every namespace holding a copy.
func (c *Copier) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.log.Warn("a trust bundle ConfigMap event without a key", "error", err)
		return
	}
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		c.log.Warn("a trust bundle ConfigMap event without a key", "key", key, "error", err)
		return
	}
	if ns != c.namespace {
		c.queue.Add(ns)
		return
	}
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		c.log.Warn("listing the trust bundle copies", "error", err)
		return
	}
	for _, cm := range all {
		if cm.Namespace != c.namespace && cm.Name == c.name {
			c.queue.Add(cm.Namespace)
		}
	}
}

// Synced reports whether the cache is filled.
func (c *Copier) Synced() bool { return c.informer.HasSynced() }

// Run brings every copy up to date whenever the source or a copy changes,
// and at every resync of the factory's informer, with a few workers; a
// copy that fails is retried with backoff (logged at warn). It returns nil
// once ctx has ended and its workers have exited; call it once.
func (c *Copier) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	wg.Wait()
	return nil
}

// processNext syncs the next namespace of the queue; false once the queue
// is shut down (or ctx ended: what is left is not copied).
func (c *Copier) processNext(ctx context.Context) bool {
	ns, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(ns)
	if ctx.Err() != nil {
		return false
	}
	if err := c.sync(ctx, ns); err != nil {
		c.log.Warn("updating the trust bundle copy, will retry", "namespace", ns, "error", err,
			"retries", c.queue.NumRequeues(ns))
		c.queue.AddRateLimited(ns)
		return true
	}
	c.queue.Forget(ns)
	return true
}

// sync makes the ConfigMap of the name in namespace ns, if there is one,
// an exact copy of the source. It makes none where there is none: Ensure
// does, for the namespaces being meshed.
func (c *Copier) sync(ctx context.Context, ns string) error {
	if ns == c.namespace {
		return nil
	}
	src, err := c.lister.ConfigMaps(c.namespace).Get(c.name)
	if apierrors.IsNotFound(err) {
		return nil // no source yet: nothing to copy; its arrival queues every copy
	}
	if err != nil {
		return fmt.Errorf("the trust bundle %s/%s: %w", c.namespace, c.name, err)
	}
	cm, err := c.lister.ConfigMaps(ns).Get(c.name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s/%s: %w", ns, c.name, err)
	}
	if err := c.reconcile(ctx, src, cm); err != nil {
		return fmt.Errorf("%s/%s: %w", ns, c.name, err)
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
		_, err = c.client.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: meshnames.FieldManager})
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
	_, err = c.client.CoreV1().ConfigMaps(cur.Namespace).Create(ctx, fresh, metav1.CreateOptions{FieldManager: meshnames.FieldManager})
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
	_, err = c.client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: meshnames.FieldManager})
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
