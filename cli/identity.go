package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/keyutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

type rotateOptions struct {
	kube       kubeOptions
	anchorFile string
	timeout    time.Duration
}

func newIdentityCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Show proxies' certificates; rotate the mesh's issuer and trust anchor",
		Long: `Show a proxy's certificate, and rotate the certificates the mesh's identities
hang from, with no failed request:

  meshctl identity show pod/NAME         the certificate a pod's proxy holds now
  meshctl identity rotate-issuer         a new issuer, signed by the trust anchor you keep
  meshctl identity rotate-trust-anchor   a new trust anchor, in stages

rotate-issuer needs the trust anchor's key, which meshctl install kept in
~/.meshctl/<context>/trust-anchor.pem (or --trust-anchor-file; the
cluster never holds it). rotate-trust-anchor does not: it makes a new anchor
and writes the new key there, keeping an earlier file beside it. It is the way
out when the anchor's key is lost: afterwards rotate-issuer works again.`,
	}
	cmd.AddCommand(newIdentityShowCommand(g), newRotateIssuerCommand(g), newRotateTrustAnchorCommand(g))
	return cmd
}

func (o *rotateOptions) addFlags(cmd *cobra.Command, g *globalOptions) {
	f := cmd.Flags()
	o.kube.use(g)
	f.StringVar(&o.anchorFile, "trust-anchor-file", "", "the trust anchor's certificate and key (default ~/.meshctl/<context>/trust-anchor.pem)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long each stage may wait for the proxies")
}

func (o *rotateOptions) file() string {
	if o.anchorFile != "" {
		return o.anchorFile
	}
	return defaultAnchorFile(o.kube.contextName())
}

func newRotateIssuerCommand(g *globalOptions) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate-issuer",
		Short: "Put a new issuer in place and move every proxy to it",
		Long: `Sign a new issuer with the trust anchor kept locally, put it in the Secret
meshctl/mesh-issuer, ask every meshed proxy to renew its certificate from it,
wait until all have, and check the mesh. Proxies keep serving throughout: the
old and new certificates chain to the same trust anchor.

It needs the trust anchor's key (--trust-anchor-file, default
~/.meshctl/<context>/trust-anchor.pem, where meshctl install kept it). If it
is lost, 'meshctl identity rotate-trust-anchor' replaces the anchor without it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRotateIssuer(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd, g)
	return cmd
}

func runRotateIssuer(ctx context.Context, o *rotateOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client := kc.typed
	anchor, err := loadAnchor(o.file())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w\nrotate-issuer signs the new issuer with the trust anchor's key, which meshctl install kept in that file: give --trust-anchor-file where it is; if it is lost, 'meshctl identity rotate-trust-anchor' replaces the anchor without it (and keeps the new key there)", err)
	}
	if err != nil {
		return err
	}
	if err := mayFollowProxies(ctx, client); err != nil {
		return err
	}
	roots, err := clusterRoots(ctx, client, o.kube.controlNS())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(roots, anchor.Cert.Equal) {
		return fmt.Errorf("the trust anchor in %s is not one of the cluster's trust anchors (ConfigMap %s/%s): wrong file or wrong cluster; if this cluster's anchor key is lost, 'meshctl identity rotate-trust-anchor' replaces the anchor without it", o.file(), o.kube.controlNS(), meshnames.TrustRootsConfigMap)
	}
	start := time.Now()
	fmt.Fprintln(stderr, "[1/2] signing a new issuer and putting it in place")
	issuer, err := putNewIssuer(ctx, client, o.kube.controlNS(), anchor, roots)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "[2/2] moving every proxy to the new issuer")
	if err := o.waitProxies(ctx, client, "on the new issuer", onIssuer(issuer), true, stderr); err != nil {
		return err
	}
	return finish(ctx, client, o.kube.controlNS(), fmt.Sprintf("issuer rotated in %s", time.Since(start).Round(time.Second)), stdout)
}

func newRotateTrustAnchorCommand(g *globalOptions) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate-trust-anchor",
		Short: "Replace the trust anchor, in stages, with no failed request",
		Long: `Make a new trust anchor (its key goes to the trust anchor file; the previous
file is kept beside it as <file>.previous, or .previous.2 and so on when an
earlier one is there: no key is ever replaced) and move the mesh to it in stages,
each asking every proxy to renew (proxies get their trust bundle from the
controller with each certificate) and waiting until all have:

  1. add the new anchor to the trust bundle       every proxy trusts both
  2. sign a new issuer with it                     every proxy is on the new issuer
  3. remove the old anchor from the bundle        every proxy trusts only the new one

then check the mesh. If it is interrupted, the mesh keeps working; finish with
rotate-issuer (if stage 2 did not complete) and by hand for stage 3.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRotateTrustAnchor(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd, g)
	return cmd
}

func runRotateTrustAnchor(ctx context.Context, o *rotateOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client := kc.typed
	start := time.Now()
	if err := rotateTrustAnchor(ctx, o, client, stderr); err != nil {
		return err
	}
	return finish(ctx, client, o.kube.controlNS(), fmt.Sprintf("trust anchor rotated in %s", time.Since(start).Round(time.Second)), stdout)
}

// rotateTrustAnchor makes a new anchor and moves every proxy to it in the
// three stages, printing progress.
func rotateTrustAnchor(ctx context.Context, o *rotateOptions, client kubernetes.Interface, stderr io.Writer) error {
	if err := mayFollowProxies(ctx, client); err != nil {
		return err
	}
	roots, err := clusterRoots(ctx, client, o.kube.controlNS())
	if err != nil {
		return err
	}
	td := trustDomain(ctx, client, o.kube.controlNS())
	// The new file is marked as this cluster's, for a later meshctl install
	// (after an uninstall) to reuse; without the mark it would refuse it.
	var mark *anchorMark
	if uid, err := clusterUID(ctx, client); err != nil {
		fmt.Fprintf(stderr, "Note: the new trust anchor file is not marked with its cluster (%v): a later meshctl install will not reuse it.\n", err)
	} else {
		mark = &anchorMark{ClusterUID: uid, Context: o.kube.contextName()}
	}
	anchor, err := ca.NewTrustAnchor(td, anchorLifetime)
	if err != nil {
		return err
	}
	kept, err := keepAnchor(o.file(), anchor, mark)
	if err != nil {
		return err
	}
	if kept != "" {
		fmt.Fprintf(stderr, "A new trust anchor was made; its key is in %s (the previous one in %s).\n", o.file(), kept)
	} else {
		fmt.Fprintf(stderr, "A new trust anchor was made; its key is in %s.\n", o.file())
	}

	fmt.Fprintln(stderr, "[1/3] adding the new trust anchor to the trust bundle")
	if err := putRoots(ctx, client, o.kube.controlNS(), append(roots, anchor.Cert)); err != nil {
		return err
	}
	// Proxies take their trust roots from the controller (never from the
	// namespace's copy of the bundle): each one is asked to renew, and its
	// new certificate comes with the new bundle.
	newFP := certs.Fingerprint(anchor.Cert)
	if err := o.waitProxies(ctx, client, "trust the new anchor", func(id proxyIdentity) bool {
		return slices.Contains(id.TrustRootFingerprints, newFP)
	}, true, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "[2/3] signing a new issuer with the new anchor")
	issuer, err := putNewIssuer(ctx, client, o.kube.controlNS(), anchor, append(roots, anchor.Cert))
	if err != nil {
		return err
	}
	if err := o.waitProxies(ctx, client, "on the new issuer", onIssuer(issuer), true, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "[3/3] removing the old trust anchors from the trust bundle")
	if err := putRoots(ctx, client, o.kube.controlNS(), []*x509.Certificate{anchor.Cert}); err != nil {
		return err
	}
	return o.waitProxies(ctx, client, "trust only the new anchor", func(id proxyIdentity) bool {
		return len(id.TrustRootFingerprints) == 1 && id.TrustRootFingerprints[0] == newFP
	}, true, stderr)
}

func (o *rotateOptions) waitProxies(ctx context.Context, client kubernetes.Interface, what string, done func(proxyIdentity) bool, renew bool, progress io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := waitProxies(ctx, client, what, done, renew, progress); refused(err) {
		return fmt.Errorf("cannot follow the proxies (the mesh keeps working; run the command again once allowed): %w", err)
	} else if err != nil {
		return fmt.Errorf("not every proxy is %s after %s (%w); the mesh keeps working, run the command again or see meshctl check --proxy", what, o.timeout, err)
	}
	return nil
}

func onIssuer(issuer *ca.KeyPair) func(proxyIdentity) bool {
	fp := certs.Fingerprint(issuer.Cert)
	return func(id proxyIdentity) bool { return id.IssuerFingerprint == fp }
}

// finish checks the mesh and prints the outcome.
func finish(ctx context.Context, client kubernetes.Interface, ns, summary string, stdout io.Writer) error {
	env := &healthcheck.Env{Client: client, Namespace: ns, Version: version.Version, Now: time.Now()}
	results := healthcheck.Run(ctx, env, []healthcheck.Category{healthcheck.Identity(), healthcheck.Proxies()}, healthcheck.Options{Wait: time.Minute})
	if err := healthcheck.WriteTable(stdout, results, false); err != nil {
		return err
	}
	if !healthcheck.Passed(results, false) {
		return errChecksFailed
	}
	fmt.Fprintln(stdout, "✔ "+summary)
	return nil
}

// loadAnchor reads the trust anchor's certificate and key from one PEM file.
func loadAnchor(path string) (*ca.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the trust anchor file (kept by meshctl install; --trust-anchor-file): %w", err)
	}
	var certPEM, keyPEM []byte
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" && certPEM == nil {
			certPEM = pem.EncodeToMemory(block)
		} else if strings.Contains(block.Type, "PRIVATE KEY") && keyPEM == nil {
			keyPEM = pem.EncodeToMemory(block)
		}
	}
	if certPEM == nil || keyPEM == nil {
		return nil, fmt.Errorf("%s must hold the trust anchor's certificate and private key (PEM)", path)
	}
	kp, err := ca.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := keyutil.VerifyPair(kp.Cert.PublicKey, kp.Key); err != nil {
		return nil, fmt.Errorf("%s: the private key does not match the certificate: %w", path, err)
	}
	if !kp.Cert.IsCA {
		return nil, fmt.Errorf("%s: the certificate is not a CA", path)
	}
	return kp, nil
}

// keepAnchor writes a new anchor's certificate and key (0600), keeping the
// previous file (and its mark) beside it under the first free name of
// <file>.previous, <file>.previous.2, …, so that no earlier key is ever
// replaced, and marks the new file with the cluster m names when m is not
// nil. It returns where the previous file went ("" when there was none).
func keepAnchor(path string, anchor *ca.KeyPair, m *anchorMark) (string, error) {
	key, err := anchor.KeyPEM()
	if err != nil {
		return "", err
	}
	kept := ""
	if _, err := os.Stat(path); err == nil {
		for i := 1; kept == ""; i++ {
			candidate := path + ".previous"
			if i > 1 {
				candidate += "." + strconv.Itoa(i)
			}
			// A hard link never replaces an existing file: a name taken by
			// an earlier rotation's key is skipped, not overwritten.
			switch err := os.Link(path, candidate); {
			case err == nil:
				kept = candidate
			case errors.Is(err, fs.ErrExist):
			default:
				return "", fmt.Errorf("keep the previous trust anchor: %w", err)
			}
		}
		if err := os.Rename(markFile(path), markFile(kept)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("keep the previous trust anchor's mark: %w", err)
		}
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("keep the previous trust anchor: %w", err)
		}
	}
	if err := os.WriteFile(path, append(anchor.CertPEM(), key...), 0o600); err != nil {
		return "", fmt.Errorf("keep the new trust anchor: %w", err)
	}
	if m == nil {
		return kept, nil
	}
	m.Created = time.Now().UTC().Truncate(time.Second)
	return kept, writeMark(path, anchor, *m)
}

func clusterRoots(ctx context.Context, client kubernetes.Interface, ns string) ([]*x509.Certificate, error) {
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, meshnames.TrustRootsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the trust bundle (is meshctl installed?): %w", err)
	}
	_, roots, err := certs.ParseRoots([]byte(cm.Data[meshnames.RootsKey]))
	return roots, err
}

func putRoots(ctx context.Context, client kubernetes.Interface, ns string, roots []*x509.Certificate) error {
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, meshnames.TrustRootsConfigMap, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, r := range roots {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	upd := cm.DeepCopy()
	upd.Data = map[string]string{meshnames.RootsKey: b.String()}
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("update the trust bundle: %w", err)
	}
	return nil
}

// putNewIssuer signs a new issuer and stores it in the issuer Secret.
func putNewIssuer(ctx context.Context, client kubernetes.Interface, ns string, anchor *ca.KeyPair, roots []*x509.Certificate) (*ca.KeyPair, error) {
	issuer, err := ca.NewIssuer(anchor, trustDomain(ctx, client, ns), issuerLifetime)
	if err != nil {
		return nil, err
	}
	if err := ca.ValidateIssuer(issuer, roots, 0); err != nil {
		return nil, fmt.Errorf("the new issuer: %w", err)
	}
	key, err := issuer.KeyPEM()
	if err != nil {
		return nil, err
	}
	sec, err := client.CoreV1().Secrets(ns).Get(ctx, meshnames.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the issuer Secret: %w", err)
	}
	upd := sec.DeepCopy()
	upd.Data = map[string][]byte{corev1.TLSCertKey: issuer.CertPEM(), corev1.TLSPrivateKeyKey: key}
	if _, err := client.CoreV1().Secrets(ns).Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return nil, fmt.Errorf("update the issuer Secret: %w", err)
	}
	return issuer, nil
}

// trustDomain reads the controller's --trust-domain (default cluster.local).
func trustDomain(ctx context.Context, client kubernetes.Interface, ns string) string {
	d, err := client.AppsV1().Deployments(ns).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
	if err == nil {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, a := range c.Args {
				if td, ok := strings.CutPrefix(a, "--trust-domain="); ok {
					return td
				}
			}
		}
	}
	return meshnames.TrustDomain
}
