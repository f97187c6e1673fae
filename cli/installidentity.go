package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/webhookcert"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// Lifetimes of what install generates.
const (
	anchorLifetime  = 10 * 365 * 24 * time.Hour
	issuerLifetime  = 365 * 24 * time.Hour
	webhookLifetime = 365 * 24 * time.Hour
	// renewBefore: a generated certificate this close to expiry is replaced.
	renewBefore = 30 * 24 * time.Hour
)

// identityFiles are the --identity-* flags: the user's own trust.
type identityFiles struct {
	anchors, issuerCert, issuerKey string
}

func (f identityFiles) given() bool {
	return f.anchors != "" || f.issuerCert != "" || f.issuerKey != ""
}

// load reads and checks the user's trust anchors and issuer: the key
// matches, the issuer is a CA chaining to an anchor, nothing has expired.
func (f identityFiles) load() (install.Identity, error) {
	if f.anchors == "" || f.issuerCert == "" || f.issuerKey == "" {
		return install.Identity{}, errors.New("--identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file go together: give all three")
	}
	read := func(flag, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return b, nil
	}
	roots, err := read("--identity-trust-anchors-file", f.anchors)
	if err != nil {
		return install.Identity{}, err
	}
	certPEM, err := read("--identity-issuer-certificate-file", f.issuerCert)
	if err != nil {
		return install.Identity{}, err
	}
	keyPEM, err := read("--identity-issuer-key-file", f.issuerKey)
	if err != nil {
		return install.Identity{}, err
	}
	if err := checkIdentity(roots, certPEM, keyPEM); err != nil {
		return install.Identity{}, fmt.Errorf("the identity files: %w", err)
	}
	return install.Identity{TrustRootsPEM: roots, IssuerCertPEM: certPEM, IssuerKeyPEM: keyPEM}, nil
}

// checkIdentity validates a trust bundle and an issuer together.
func checkIdentity(rootsPEM, certPEM, keyPEM []byte) error {
	_, anchors, err := certs.ParseRoots(rootsPEM)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, a := range anchors {
		if now.After(a.NotAfter) {
			return fmt.Errorf("trust anchor %q expired at %s", a.Subject.CommonName, a.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	kp, err := ca.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	return ca.ValidateIssuer(kp, anchors, 0)
}

// existingIdentity returns the cluster's current trust and issuer when they
// are valid, so that installing again changes nothing.
func existingIdentity(ctx context.Context, client kubernetes.Interface, ns string) (install.Identity, bool, error) {
	sec, err := client.CoreV1().Secrets(ns).Get(ctx, meshnames.IssuerSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return install.Identity{}, false, nil
	}
	if err != nil {
		return install.Identity{}, false, fmt.Errorf("read the issuer Secret %s/%s: %w", ns, meshnames.IssuerSecret, err)
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, meshnames.TrustRootsConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return install.Identity{}, false, nil
	}
	if err != nil {
		return install.Identity{}, false, fmt.Errorf("read the trust roots %s/%s: %w", ns, meshnames.TrustRootsConfigMap, err)
	}
	id := install.Identity{
		TrustRootsPEM: []byte(cm.Data[meshnames.RootsKey]),
		IssuerCertPEM: sec.Data[corev1.TLSCertKey], IssuerKeyPEM: sec.Data[corev1.TLSPrivateKeyKey],
	}
	if err := checkIdentity(id.TrustRootsPEM, id.IssuerCertPEM, id.IssuerKeyPEM); err != nil {
		return id, false, fmt.Errorf("the installed identity is not usable (%w); rotate it (meshctl identity rotate-issuer) or give your own with --identity-*-file", err)
	}
	return id, true, nil
}

// newIdentity makes a trust anchor and an issuer, and keeps the anchor
// (certificate and key) in keyFile, 0600, never in the cluster, with the
// mark m beside it when m is not nil. An existing keyFile is never
// overwritten. With keyFile "" (install only prints), the anchor's key is
// kept nowhere: nothing is written.
func newIdentity(trustDomain, keyFile string, m *anchorMark) (install.Identity, error) {
	anchor, err := ca.NewTrustAnchor(trustDomain, anchorLifetime)
	if err != nil {
		return install.Identity{}, err
	}
	id, err := issuerIdentity(anchor, trustDomain)
	if err != nil || keyFile == "" {
		return id, err
	}
	if err := writeNewAnchor(keyFile, anchor); err != nil {
		return install.Identity{}, err
	}
	if m != nil {
		if err := writeMark(keyFile, anchor, *m); err != nil {
			// No cluster uses the new anchor yet: nothing is lost.
			_ = os.Remove(keyFile)
			return install.Identity{}, err
		}
	}
	return id, nil
}

// issuerIdentity signs a new issuer with the anchor.
func issuerIdentity(anchor *ca.KeyPair, trustDomain string) (install.Identity, error) {
	issuer, err := ca.NewIssuer(anchor, trustDomain, issuerLifetime)
	if err != nil {
		return install.Identity{}, err
	}
	issuerKey, err := issuer.KeyPEM()
	if err != nil {
		return install.Identity{}, err
	}
	return install.Identity{TrustRootsPEM: anchor.CertPEM(), IssuerCertPEM: issuer.CertPEM(), IssuerKeyPEM: issuerKey}, nil
}

// writeNewAnchor writes the anchor's certificate and key to a new file,
// 0600; a file already there is left as it is and refused.
func writeNewAnchor(keyFile string, anchor *ca.KeyPair) error {
	anchorKey, err := anchor.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return fmt.Errorf("keep the trust anchor: %w", err)
	}
	f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: it may hold the key of another mesh's trust anchor; move it away or choose another path with --trust-anchor-file", keyFile)
	}
	if err != nil {
		return fmt.Errorf("keep the trust anchor: %w", err)
	}
	_, err = f.Write(append(anchor.CertPEM(), anchorKey...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(keyFile) // ours, incomplete, used by no cluster
		return fmt.Errorf("keep the trust anchor: %w", err)
	}
	return nil
}

// removeFormerBindings deletes what earlier versions installed and this one
// no longer does: the binding of system:auth-delegator to the controller
// (ReviewerRoleName now grants only TokenReviews and SubjectAccessReviews).
// Applying never removes anything, so an upgrade would otherwise keep the
// wider right. Only meshctl's own object (by its label) is deleted.
func removeFormerBindings(ctx context.Context, client kubernetes.Interface) error {
	crbs := client.RbacV1().ClusterRoleBindings()
	b, err := crbs.Get(ctx, install.AuthDelegatorBinding, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the former ClusterRoleBinding %s: %w", install.AuthDelegatorBinding, err)
	}
	if b.Labels[install.PartOfLabel] != install.PartOfValue {
		return nil
	}
	uid := b.UID
	err = crbs.Delete(ctx, b.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove the former ClusterRoleBinding %s: %w", install.AuthDelegatorBinding, err)
	}
	return nil
}

// defaultAnchorFile is where a generated trust anchor is kept:
// ~/.meshctl/<kubeconfig context>/trust-anchor.pem.
func defaultAnchorFile(contextName string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	if contextName == "" {
		contextName = "default"
	}
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r == ' ' {
			return '_'
		}
		return r
	}, contextName)
	if safe == "." || safe == ".." {
		safe = "_" + safe // never ~/.meshctl itself or its parent
	}
	return filepath.Join(home, ".meshctl", safe, "trust-anchor.pem")
}

// existingWebhook returns the cluster's webhook certificate when it is
// still good for a while and names the Service.
func existingWebhook(ctx context.Context, client kubernetes.Interface, ns string) (install.Webhook, bool) {
	sec, err := client.CoreV1().Secrets(ns).Get(ctx, meshnames.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		return install.Webhook{}, false
	}
	w := install.Webhook{CABundle: sec.Data["ca.crt"], CertPEM: sec.Data[corev1.TLSCertKey], KeyPEM: sec.Data[corev1.TLSPrivateKeyKey]}
	block, _ := pem.Decode(w.CertPEM)
	if block == nil || len(w.CABundle) == 0 || len(w.KeyPEM) == 0 {
		return install.Webhook{}, false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || time.Until(cert.NotAfter) < renewBefore || cert.VerifyHostname(webhookcert.DNSNames(meshnames.ServiceName, ns)[0]) != nil {
		return install.Webhook{}, false
	}
	return w, true
}

// newWebhook makes the webhook's CA and serving certificate.
func newWebhook(ns string) (install.Webhook, error) {
	b, err := webhookcert.Generate(meshnames.ServiceName, ns, webhookLifetime)
	if err != nil {
		return install.Webhook{}, err
	}
	return install.Webhook{CABundle: b.CABundle, CertPEM: b.CertPEM, KeyPEM: b.KeyPEM}, nil
}
