package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/kubeapply"
	"github.com/meshctl/meshctl/internal/version"
)

// fieldManager owns what meshctl applies (server-side apply).
const fieldManager = "meshctl"

type installOptions struct {
	kube       kubeOptions
	values     install.Values
	identity   identityFiles
	anchorFile string
	output     string
	dryRun     bool
	wait       bool
	timeout    time.Duration
}

func (o *installOptions) validate() error {
	switch o.output {
	case "", "yaml", "json":
	default:
		return fmt.Errorf("-o %q: want yaml or json", o.output)
	}
	if o.timeout <= 0 {
		return errors.New("--timeout must be above zero")
	}
	return nil
}

func newInstallCommand() *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the control plane, or upgrade it in place",
		Long: `Install the meshctl control plane into the cluster: namespace meshctl, the
mesh-controller Deployment and its least-privilege RBAC, its Services, the
proxy injector's webhook (with its certificate), the trust roots and the issuer.

With no --identity-* flags it makes a trust anchor and an issuer. The trust
anchor's private key is never stored in the cluster: it is written, with the
anchor's certificate, to a local file (0600; its path is printed) that
'meshctl identity rotate-issuer' needs later. Keep it safe.

Running it again changes nothing: the issuer, the trust roots and the webhook
certificate in the cluster are kept as they are. Running a newer meshctl
upgrades the control plane in place.

It applies the objects itself (server-side apply, field manager "meshctl") and,
with --wait (the default), shows progress until the control plane is ready.
With -o yaml|json or --dry-run it only prints them.`,
		Example: `  meshctl install
  meshctl install --ha --registry ghcr.io/example/meshctl --image-tag v1.2.0
  meshctl install -o yaml > meshctl.yaml
  meshctl install --identity-trust-anchors-file ca.pem \
    --identity-issuer-certificate-file issuer.pem --identity-issuer-key-file issuer-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runInstall(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.addFlags(f)
	f.StringVar(&o.values.Namespace, "control-plane-namespace", "meshctl", "namespace of the control plane")
	f.StringVar(&o.values.TrustDomain, "trust-domain", "cluster.local", "the mesh's trust domain (SPIFFE IDs spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
	f.StringVar(&o.values.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	f.StringVar(&o.values.Registry, "registry", "meshctl", "registry and path of the images (<registry>/controller, <registry>/proxy)")
	f.StringVar(&o.values.ImageTag, "image-tag", version.Version, "tag of the images")
	f.StringVar(&o.values.ImagePullPolicy, "image-pull-policy", "IfNotPresent", "pull policy of the images: Always, IfNotPresent or Never")
	f.BoolVar(&o.values.HA, "ha", false, "run 3 controller replicas spread over nodes, with a PodDisruptionBudget")
	f.DurationVar(&o.values.LeafLifetime, "identity-issuance-lifetime", 24*time.Hour, "lifetime of workload certificates (proxies renew at 70 %)")
	f.StringVar(&o.values.LogLevel, "controller-log-level", "info", "the controller's log level: debug, info, warn or error")
	f.StringVar(&o.identity.anchors, "identity-trust-anchors-file", "", "PEM trust anchors to use instead of generating one")
	f.StringVar(&o.identity.issuerCert, "identity-issuer-certificate-file", "", "PEM issuer certificate, signed by one of the trust anchors")
	f.StringVar(&o.identity.issuerKey, "identity-issuer-key-file", "", "PEM private key of the issuer")
	f.StringVar(&o.anchorFile, "trust-anchor-file", "", "where to keep a generated trust anchor's certificate and key (default ~/.meshctl/<context>/trust-anchor.pem)")
	f.StringVarP(&o.output, "output", "o", "", "print the manifests as yaml or json instead of applying them")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifests (as YAML unless -o json) instead of applying them")
	f.BoolVar(&o.wait, "wait", true, "wait until the control plane is ready")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func runInstall(ctx context.Context, o *installOptions, stdout, stderr io.Writer) error {
	printOnly := o.dryRun || o.output != ""
	cfg, client, connErr := o.kube.client()
	if connErr != nil && !printOnly {
		return connErr
	}
	v := o.values.WithDefaults()
	if err := v.ValidateSettings(); err != nil {
		return err
	}
	// Identity: the user's own, else what the cluster has, else new.
	var err error
	switch {
	case o.identity.given():
		if v.Identity, err = o.identity.load(); err != nil {
			return err
		}
	default:
		found := false
		if connErr == nil {
			v.Identity, found, err = existingIdentity(ctx, client, v.Namespace)
			switch {
			case err != nil && !printOnly:
				return err
			case err != nil:
				fmt.Fprintf(stderr, "Note: could not read the cluster's identity (%v); printing a new one.\n", err)
				found = false
			}
		}
		if !found {
			file := o.anchorFile
			if file == "" {
				file = defaultAnchorFile(o.kube.contextName())
			}
			if v.Identity, err = newIdentity(v.TrustDomain, file); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "Generated a trust anchor and an issuer. The trust anchor's key is in %s (not in the cluster): keep it safe, 'meshctl identity rotate-issuer' needs it.\n", file)
		}
	}
	found := false
	if connErr == nil {
		v.Webhook, found = existingWebhook(ctx, client, v.Namespace)
	}
	if !found {
		if v.Webhook, err = newWebhook(v.Namespace); err != nil {
			return err
		}
	}
	objs, err := install.Render(v)
	if err != nil {
		return err
	}
	if printOnly {
		return printObjects(stdout, objs, o.output)
	}
	return applyAndWait(ctx, cfg, client, objs, v, o, stdout, stderr)
}

// printObjects writes YAML, or a JSON List.
func printObjects(w io.Writer, objs []runtime.Object, output string) error {
	if output == "json" {
		us, err := install.Unstructured(objs)
		if err != nil {
			return err
		}
		items := make([]map[string]any, len(us))
		for i, u := range us {
			items[i] = u.Object
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	data, err := install.YAML(objs)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func applyAndWait(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, objs []runtime.Object, v install.Values, o *installOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	us, err := install.Unstructured(objs)
	if err != nil {
		return err
	}
	applier, err := kubeapply.New(cfg, fieldManager)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Applying %d objects to namespace %s ...\n", len(us), v.Namespace)
	if err := applier.Apply(ctx, us); err != nil {
		return fmt.Errorf("%w\nNothing after that object was applied; fix the cause and run meshctl install again (it is safe to repeat)", err)
	}
	if !o.wait {
		fmt.Fprintf(stdout, "meshctl %s applied (not waiting for it to be ready)\n", v.ImageTag)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := waitControlPlane(ctx, client, v.Namespace, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "✔ meshctl %s control plane ready in namespace %s (%s)\n", v.ImageTag, v.Namespace, time.Since(start).Round(time.Second))
	return nil
}
