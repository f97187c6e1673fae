package healthcheck

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// renewWithin is how early an expiry warns.
const renewWithin = 60 * 24 * time.Hour

// Identity checks the trust anchors and the issuer.
func Identity() Category {
	return Category{Name: "identity", Checks: []Check{
		{
			Name: "the trust anchors are valid",
			Hint: "rotate the trust anchor: meshctl identity rotate-trust-anchor",
			Run: func(ctx context.Context, env *Env) error {
				anchors, err := readAnchors(ctx, env)
				if err != nil {
					return err
				}
				return expiry(env.Now, anchors...)
			},
		},
		{
			Name: "the issuer chains to a trust anchor",
			Hint: "put an issuer signed by a trust anchor in place: meshctl identity rotate-issuer",
			Run: func(ctx context.Context, env *Env) error {
				anchors, err := readAnchors(ctx, env)
				if err != nil {
					return err
				}
				issuer, err := readIssuer(ctx, env)
				if err != nil {
					return err
				}
				return ca.ValidateIssuer(issuer, anchors, 0)
			},
		},
		{
			Name: "the issuer is valid for at least 60 days",
			Hint: "renew it: meshctl identity rotate-issuer",
			Run: func(ctx context.Context, env *Env) error {
				issuer, err := readIssuer(ctx, env)
				if err != nil {
					return err
				}
				return expiry(env.Now, issuer.Cert)
			},
		},
	}}
}

func readAnchors(ctx context.Context, env *Env) ([]*x509.Certificate, error) {
	cm, err := env.Client.CoreV1().ConfigMaps(env.Namespace).Get(ctx, meshnames.TrustRootsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	anchors, err := parseCerts([]byte(cm.Data[meshnames.RootsKey]))
	if err != nil {
		return nil, fmt.Errorf("the ConfigMap %s: %w", meshnames.TrustRootsConfigMap, err)
	}
	if len(anchors) == 0 {
		return nil, fmt.Errorf("the ConfigMap %s holds no certificate", meshnames.TrustRootsConfigMap)
	}
	return anchors, nil
}

func readIssuer(ctx context.Context, env *Env) (*ca.KeyPair, error) {
	sec, err := env.Client.CoreV1().Secrets(env.Namespace).Get(ctx, meshnames.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	kp, err := ca.ParseKeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("the Secret %s: %w", meshnames.IssuerSecret, err)
	}
	return kp, nil
}

// expiry fails for an expired certificate and warns for one expiring soon.
func expiry(now time.Time, certs ...*x509.Certificate) error {
	for _, c := range certs {
		if now.After(c.NotAfter) {
			return fmt.Errorf("%q expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(c.NotBefore) {
			return fmt.Errorf("%q is not valid before %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	for _, c := range certs {
		if c.NotAfter.Sub(now) < renewWithin {
			return Warnf("%q expires at %s, in %d days", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339), int(c.NotAfter.Sub(now).Hours()/24))
		}
	}
	return nil
}
