package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// trust follows the issuer Secret and the trust-roots ConfigMap: the CA
// signs with the newest valid issuer, and the trust bundle is whatever the
// ConfigMap holds (old and new roots together during a rotation).
type trust struct {
	ns  string
	ca  atomic.Pointer[ca.CA]
	log func(msg string, args ...any)

	rootsPEM atomic.Pointer[[]byte]
	roots    atomic.Pointer[x509.CertPool]
	anchors  atomic.Pointer[[]*x509.Certificate]

	// mu serialises reloads and guards pendingIssuer; changed wakes whoever
	// re-issues the controller's own certificate.
	mu      sync.Mutex
	changed chan struct{}
	// pendingIssuer is the last issuer Secret seen, kept to judge it again
	// when the trust bundle changes: the two are updated separately, and an
	// issuer for new roots may arrive before the roots.
	pendingIssuer *corev1.Secret
}

// watch starts informers on the two objects, which run until ctx ends, and
// waits up to startTimeout for the first valid issuer and bundle.
func (t *trust) watch(ctx context.Context, factory informers.SharedInformerFactory, startTimeout time.Duration) error {
	secrets := factory.Core().V1().Secrets().Informer()
	cms := factory.Core().V1().ConfigMaps().Informer()
	onCM := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == meshnames.TrustRootsConfigMap {
			t.loadRoots(cm)
		}
	}
	onSecret := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok && s.Name == meshnames.IssuerSecret {
			t.loadIssuer(s)
		}
	}
	if _, err := cms.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onCM, UpdateFunc: func(_, o any) { onCM(o) }}); err != nil {
		return err
	}
	if _, err := secrets.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onSecret, UpdateFunc: func(_, o any) { onSecret(o) }}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), secrets.HasSynced, cms.HasSynced) {
		return errors.New("the Secret and ConfigMap caches did not sync")
	}
	for t.ca.Load() == nil || t.roots.Load() == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no valid issuer (Secret %s/%s) and trust bundle (ConfigMap %s/%s): %w", t.ns, meshnames.IssuerSecret, t.ns, meshnames.TrustRootsConfigMap, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func (t *trust) loadRoots(cm *corev1.ConfigMap) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data := []byte(cm.Data[meshnames.RootsKey])
	pool, anchors, err := certs.ParseRoots(data)
	if err != nil {
		t.log("trust bundle rejected; keeping the current one", "error", err)
		return
	}
	t.rootsPEM.Store(&data)
	t.roots.Store(pool)
	t.anchors.Store(&anchors)
	t.log("trust bundle loaded", "roots", len(anchors))
	if t.pendingIssuer != nil {
		t.loadIssuerLocked(t.pendingIssuer)
	}
	t.notify()
}

func (t *trust) loadIssuer(s *corev1.Secret) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pendingIssuer = s
	t.loadIssuerLocked(s)
}

// loadIssuerLocked puts the Secret's issuer in place if it is valid for the
// current trust bundle. t.mu is held.
func (t *trust) loadIssuerLocked(s *corev1.Secret) {
	kp, err := ca.ParseKeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err == nil {
		if anchors := t.anchors.Load(); anchors != nil {
			err = ca.ValidateIssuer(kp, *anchors, 0)
		}
	}
	if err != nil {
		t.log("issuer rejected; keeping the current one", "error", err)
		return
	}
	if cur := t.ca.Load(); cur != nil {
		if cur.Issuer().Equal(kp.Cert) {
			return
		}
		if err := cur.SetIssuer(kp); err != nil {
			t.log("issuer rejected; keeping the current one", "error", err)
			return
		}
	} else {
		c, err := ca.New(kp)
		if err != nil {
			t.log("issuer rejected", "error", err)
			return
		}
		t.ca.Store(c)
	}
	t.log("issuer loaded", "subject", kp.Cert.Subject.CommonName, "not_after", kp.Cert.NotAfter)
	t.notify()
}

func (t *trust) notify() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Roots returns the trust bundle as PEM.
func (t *trust) Roots() []byte {
	if p := t.rootsPEM.Load(); p != nil {
		return *p
	}
	return nil
}
