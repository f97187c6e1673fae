package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/meshnames"
)

func trustObjects(t *testing.T, anchor, issuer *ca.KeyPair) (*corev1.ConfigMap, *corev1.Secret) {
	t.Helper()
	key, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: meshnames.TrustRootsConfigMap}, Data: map[string]string{meshnames.RootsKey: string(anchor.CertPEM())}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: meshnames.IssuerSecret}, Data: map[string][]byte{corev1.TLSCertKey: issuer.CertPEM(), corev1.TLSPrivateKeyKey: key}}
}

// TestAnIssuerArrivingBeforeItsRootsIsTakenWhenTheyCome: install applies the
// issuer Secret and the trust bundle separately; when a new anchor's issuer
// is seen first it cannot be validated yet, and must be taken as soon as the
// roots arrive, not at the next resync.
func TestAnIssuerArrivingBeforeItsRootsIsTakenWhenTheyCome(t *testing.T) {
	mk := func() (*ca.KeyPair, *ca.KeyPair) {
		a, err := ca.NewTrustAnchor("cluster.local", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		i, err := ca.NewIssuer(a, "cluster.local", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return a, i
	}
	anchorA, issuerA := mk()
	anchorB, issuerB := mk()
	tr := &trust{ns: "meshctl", changed: make(chan struct{}, 1), log: func(string, ...any) {}}
	cmA, secA := trustObjects(t, anchorA, issuerA)
	cmB, secB := trustObjects(t, anchorB, issuerB)
	tr.loadRoots(cmA)
	tr.loadIssuer(secA)
	if !tr.ca.Load().Issuer().Equal(issuerA.Cert) {
		t.Fatal("issuer A not in place")
	}
	tr.loadIssuer(secB) // before its roots: cannot be validated yet
	if !tr.ca.Load().Issuer().Equal(issuerA.Cert) {
		t.Fatal("an issuer that does not chain to the roots was taken")
	}
	tr.loadRoots(cmB)
	if !tr.ca.Load().Issuer().Equal(issuerB.Cert) {
		t.Error("the new roots came but the issuer waiting for them was not taken")
	}
}
