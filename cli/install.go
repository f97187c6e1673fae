package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/kubeapply"
	"github.com/meshctl/meshctl/internal/meshnames"
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
	// force lets an older meshctl replace a newer one's control plane.
	force bool
	// upgrade: the control plane must be installed already, and --dry-run
	// prints what would change instead of the manifests.
	upgrade bool
	// skipPrune: the installed control plane kept no settings (an older
	// meshctl): nothing is deleted this time.
	skipPrune bool
}

// validateRun checks the flags of this run alone (not kept as settings),
// before connecting.
func (o *installOptions) validateRun() error {
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

func (o *installOptions) validate() error {
	if err := o.validateRun(); err != nil {
		return err
	}
	if !meshnames.ValidDefaultPolicy(o.values.DefaultInboundPolicy) {
		return fmt.Errorf("--default-inbound-policy %q: want %s, %s or %s", o.values.DefaultInboundPolicy,
			meshnames.DefaultAllUnauthenticated, meshnames.DefaultAllAuthenticated, meshnames.DefaultDeny)
	}
	if _, err := podpatch.ParseClusterNetworks(o.values.ClusterNetworks); err != nil {
		return fmt.Errorf("--cluster-networks %q: %w", o.values.ClusterNetworks, err)
	}
	return nil
}

func newInstallCommand(g *globalOptions) *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the control plane, or upgrade it in place",
		Long: `Install the meshctl control plane into the cluster: namespace meshctl, the
mesh-controller Deployment and its least-privilege RBAC, its Services, the
proxy injector's webhook (with its certificate), the trust roots and the issuer,
and the AuthorizationPolicy CRD (policy.meshctl.io/v1alpha1).

It also creates the Gateway API CRDs (` + gatewayapi.Version + `, standard channel:
GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) that the cluster
lacks; meshctl reads HTTPRoutes for weighted splits. Gateway API CRDs that are
already there are kept as they are, whatever their version: they may belong to
other tools. The CRDs are established before anything else is applied.

--default-inbound-policy is what a meshed pod lets in on a port that no
AuthorizationPolicy selects:
  all-unauthenticated  every client, meshed or not (the default)
  all-authenticated    only meshed clients (mutual TLS, any identity of the mesh)
  deny                 only what an AuthorizationPolicy allows
A namespace or a pod (the pod's wins) overrides it with the annotation
` + meshnames.DefaultPolicyAnnotation + `. Kubelet probes are always let in.

--cluster-networks lists the cluster's pod and Service networks (CIDRs): a
proxy never reaches a destination in them in plaintext until the controller
says it is outside the mesh. The default covers the private ranges
(` + meshnames.DefaultClusterNetworks + `);
a cluster whose pod or Service ranges lie elsewhere must list them, or traffic
to them fails open while discovery is slow or the controller is away. A pod
overrides it with the annotation ` + meshnames.ClusterNetworks + `.

With no --identity-* flags it makes a trust anchor and an issuer. The trust
anchor's private key is never stored in the cluster: it is written, with the
anchor's certificate, to a local file (0600; its path is printed) that
'meshctl identity rotate-issuer' needs later. Keep it safe. Beside it,
<file>.cluster.json records which cluster the anchor was made for (the UID of
its kube-system namespace). Installing again into that cluster after
'meshctl uninstall' reuses the anchor in the file (and says so); a file of
another cluster, one with no such record, or one that is not a valid anchor
is refused, never overwritten. With -o or --dry-run nothing is written: the
printed issuer's anchor key is kept nowhere.

Running it again changes nothing: the issuer, the trust roots and the webhook
certificate in the cluster are kept as they are, and so are the settings it
was given, kept in the ConfigMap meshctl-install-settings: --trust-domain,
--cluster-domain, --registry, --image-pull-policy, --ha,
--identity-issuance-lifetime, --controller-log-level, --default-inbound-policy
and --cluster-networks. One not given again keeps its installed value; one
given replaces it. The images follow this meshctl's version unless --image-tag
is given. Running a newer meshctl upgrades
the control plane in place, as 'meshctl upgrade' does (see its help: what the
new version no longer renders is deleted; a downgrade needs --force).

It applies the objects itself (server-side apply, field manager "meshctl") and,
with --wait (the default), shows progress until the control plane is ready.
With -o yaml|json or --dry-run it only prints them, the Gateway API CRDs first
(all five: applying them with kubectl would replace a cluster's own).`,
		Example: `  meshctl install
  meshctl install --ha --registry ghcr.io/example/meshctl --image-tag v1.2.0
  meshctl install --default-inbound-policy all-authenticated
  meshctl install --cluster-networks 10.32.0.0/12,198.18.0.0/15
  meshctl install -o yaml > meshctl.yaml
  meshctl install --identity-trust-anchors-file ca.pem \
    --identity-issuer-certificate-file issuer.pem --identity-issuer-key-file issuer-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInstall(cmd.Context(), o, cmd.Flags(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd.Flags(), g)
	return cmd
}

// addFlags adds install's (and upgrade's) flags.
func (o *installOptions) addFlags(f *pflag.FlagSet, g *globalOptions) {
	o.kube.use(g)
	f.StringVar(&o.values.TrustDomain, "trust-domain", meshnames.TrustDomain, "the mesh's trust domain (SPIFFE IDs spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
	f.StringVar(&o.values.ClusterDomain, "cluster-domain", meshnames.ClusterDomain, "the cluster's DNS domain")
	f.StringVar(&o.values.Registry, "registry", "meshctl", "registry and path of the images (<registry>/controller, <registry>/proxy)")
	f.StringVar(&o.values.ImageTag, "image-tag", version.Version, "tag of the images")
	f.StringVar(&o.values.ImagePullPolicy, "image-pull-policy", "IfNotPresent", "pull policy of the images: Always, IfNotPresent or Never")
	f.BoolVar(&o.values.HA, "ha", false, "run 3 controller replicas spread over nodes, with a PodDisruptionBudget")
	f.DurationVar(&o.values.LeafLifetime, "identity-issuance-lifetime", 24*time.Hour, "lifetime of workload certificates (proxies renew at 70 %)")
	f.StringVar(&o.values.LogLevel, "controller-log-level", "info", "the controller's log level: debug, info, warn or error")
	f.StringVar(&o.values.DefaultInboundPolicy, "default-inbound-policy", meshnames.DefaultAllUnauthenticated,
		"what meshed pods let in on ports no AuthorizationPolicy selects: all-unauthenticated, all-authenticated or deny (annotation "+meshnames.DefaultPolicyAnnotation+" overrides it)")
	f.StringVar(&o.values.ClusterNetworks, "cluster-networks", meshnames.DefaultClusterNetworks,
		"the cluster's pod and Service networks (CIDRs, comma-separated): proxies never reach them in plaintext until the controller says a destination is outside the mesh (annotation "+meshnames.ClusterNetworks+" overrides it per pod)")
	f.StringVar(&o.identity.anchors, "identity-trust-anchors-file", "", "PEM trust anchors to use instead of generating one")
	f.StringVar(&o.identity.issuerCert, "identity-issuer-certificate-file", "", "PEM issuer certificate, signed by one of the trust anchors")
	f.StringVar(&o.identity.issuerKey, "identity-issuer-key-file", "", "PEM private key of the issuer")
	f.StringVar(&o.anchorFile, "trust-anchor-file", "", "where to keep a generated trust anchor's certificate and key (default ~/.meshctl/<context>/trust-anchor.pem)")
	f.StringVarP(&o.output, "output", "o", "", "print the manifests as yaml or json instead of applying them")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifests (as YAML unless -o json) instead of applying them")
	f.BoolVar(&o.wait, "wait", true, "wait until the control plane is ready")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long --wait waits")
	f.BoolVar(&o.force, "force", false, "replace the control plane of a newer meshctl with this older one's (a downgrade)")
}

// runInstall installs or upgrades the control plane. With flags (the
// command's), the settings an earlier install kept are reused for every
// setting flag not given.
func runInstall(ctx context.Context, o *installOptions, flags *pflag.FlagSet, stdout, stderr io.Writer) error {
	if err := o.validateRun(); err != nil {
		return command.Usage(err)
	}
	o.values.Namespace = o.kube.controlNS()
	printOnly := o.dryRun || o.output != ""
	diffOnly := o.upgrade && o.dryRun && o.output == ""
	kc, connErr := o.kube.clients()
	if connErr != nil && (!printOnly || o.upgrade) {
		return connErr
	}
	var client kubernetes.Interface
	if connErr == nil {
		client = kc.typed
	}
	if flags != nil {
		var inst installed
		var readErr error
		if connErr == nil {
			if inst, readErr = readInstalled(ctx, client, o.values.Namespace); readErr != nil {
				if !printOnly {
					return readErr
				}
				if !o.upgrade {
					fmt.Fprintf(stderr, "Note: %v; printing with this run's flags only.\n", readErr)
				}
			}
		}
		o.skipPrune = inst.legacy // what an older meshctl applied is pruned once its settings are kept
		if o.upgrade && readErr != nil {
			return readErr // not "not installed": it could not be read
		}
		if o.upgrade && !inst.present {
			return command.NotFound(fmt.Errorf("meshctl is not installed in namespace %s (no ConfigMap %s, no Deployment %s): install it with 'meshctl install'",
				o.values.Namespace, meshnames.InstallSettingsConfigMap, meshnames.ServiceName))
		}
		keep, reused, changed, err := applyKept(flags, inst.kept, stderr)
		if err != nil {
			return err
		}
		if inst.present {
			reportSettings(stderr, o.values.Namespace, inst, version.Version, reused, changed)
			if err := checkDowngrade(inst.version, version.Version, o.force, stderr); err != nil {
				return err
			}
		}
		o.values.Settings = keep
		// The flags, given or kept, as the command line would have them.
		if err := o.validate(); err != nil {
			if len(reused) > 0 {
				return command.Usage(fmt.Errorf("%w (given, or kept in ConfigMap %s/%s: give the flag to replace a kept value)", err, o.values.Namespace, meshnames.InstallSettingsConfigMap))
			}
			return command.Usage(err)
		}
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
		switch {
		case !found && printOnly:
			// Printing only: no file is written, so the anchor's key is
			// kept nowhere.
			if v.Identity, err = newIdentity(v.TrustDomain, "", nil); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "Generated a trust anchor and an issuer for the printed manifests; the trust anchor's key was not kept (-o and --dry-run write nothing). 'meshctl identity rotate-issuer' needs it: for a mesh you mean to keep, make your own and pass the --identity-* files, or run meshctl install without -o/--dry-run.")
		case !found:
			file := o.anchorFile
			if file == "" {
				file = defaultAnchorFile(o.kube.contextName())
			}
			uid, err := clusterUID(ctx, client)
			if err != nil {
				return err
			}
			var reused bool
			v.Identity, reused, err = clusterIdentity(v.TrustDomain, file, anchorMark{ClusterUID: uid, Context: o.kube.contextName()})
			if err != nil {
				return err
			}
			if reused {
				fmt.Fprintf(stderr, "Reusing the trust anchor in %s (made for this cluster by an earlier meshctl install) and signing a new issuer with it.\n", file)
			} else {
				fmt.Fprintf(stderr, "Generated a trust anchor and an issuer. The trust anchor's key is in %s (not in the cluster): keep it safe, 'meshctl identity rotate-issuer' needs it.\n", file)
			}
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
	if diffOnly {
		return diffInstall(ctx, kc, objs, v.Namespace, !o.skipPrune, stdout)
	}
	if printOnly {
		// The Gateway API CRDs first, all of them: there is no cluster to
		// ask which are missing.
		gateway, err := gatewayapi.CRDs()
		if err != nil {
			return err
		}
		all := make([]runtime.Object, 0, len(gateway)+len(objs))
		for _, c := range gateway {
			all = append(all, c)
		}
		return printObjects(stdout, append(all, objs...), o.output)
	}
	return applyAndWait(ctx, kc, objs, v, o, stdout, stderr)
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

func applyAndWait(ctx context.Context, kc *kubeClients, objs []runtime.Object, v install.Values, o *installOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	us, err := install.Unstructured(objs)
	if err != nil {
		return err
	}
	applier, err := kubeapply.New(kc.config, fieldManager)
	if err != nil {
		return err
	}
	crds := crdsFirst(us)
	if err := applyCRDs(ctx, kc, applier, crds, stderr); err != nil {
		return fmt.Errorf("%w\nNothing else was applied; fix the cause and run meshctl install again (it is safe to repeat)", err)
	}
	others := us[len(crds):]
	fmt.Fprintf(stderr, "Applying %d objects to namespace %s ...\n", len(others), v.Namespace)
	if err := applier.Apply(ctx, others); err != nil {
		return fmt.Errorf("%w\nNothing after that object was applied; fix the cause and run meshctl install again (it is safe to repeat)", err)
	}
	if err := removeFormerBindings(ctx, kc.typed); err != nil {
		return err
	}
	if !o.skipPrune {
		old, err := stale(ctx, kc.metadata, v.Namespace, us)
		if err != nil {
			return err
		}
		if err := prune(ctx, kc.metadata, v.Namespace, old, stderr); err != nil {
			return err
		}
	}
	if !o.wait {
		fmt.Fprintf(stdout, "meshctl %s applied (not waiting for it to be ready)\n", v.ImageTag)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := waitControlPlane(ctx, kc.typed, v.Namespace, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "✔ meshctl %s control plane ready in namespace %s (%s)\n", v.ImageTag, v.Namespace, time.Since(start).Round(time.Second))
	return nil
}

// crdsFirst returns the leading CRDs of objs (install.Render puts its CRDs
// first).
func crdsFirst(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	n := 0
	for n < len(objs) && objs[n].GetKind() == install.CRDKind {
		n++
	}
	return objs[:n]
}

// applyCRDs creates the missing Gateway API CRDs, applies meshctl's own and
// waits until all of those are established: the controller watches their
// kinds from its start.
func applyCRDs(ctx context.Context, kc *kubeClients, applier *kubeapply.Applier, own []*unstructured.Unstructured, progress io.Writer) error {
	existing, err := installedCRDs(ctx, kc.metadata)
	if err != nil {
		return err
	}
	created, err := ensureGatewayAPI(ctx, kc.dynamic, existing, progress)
	if err != nil {
		return err
	}
	wait := created
	for _, c := range own {
		fmt.Fprintf(progress, "Applying CRD %s\n", c.GetName())
		wait = append(wait, c.GetName())
	}
	if err := applier.Apply(ctx, own); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, crdTimeout)
	defer cancel()
	return waitEstablished(ctx, kc.dynamic, wait, progress)
}

// crdTimeout bounds the wait for CRDs to be established (it takes the API
// server about a second).
const crdTimeout = time.Minute

// diffInstall prints what applying objs would change (upgrade --dry-run):
// the Gateway API CRDs it would create, each object's changes, what it
// would delete.
func diffInstall(ctx context.Context, kc *kubeClients, objs []runtime.Object, ns string, pruning bool, w io.Writer) error {
	us, err := install.Unstructured(objs)
	if err != nil {
		return err
	}
	applier, err := kubeapply.New(kc.config, fieldManager)
	if err != nil {
		return err
	}
	existing, err := installedCRDs(ctx, kc.metadata)
	if err != nil {
		return err
	}
	gateway, err := gatewayapi.CRDs()
	if err != nil {
		return err
	}
	for _, c := range gateway {
		if _, ok := existing[c.GetName()]; !ok {
			fmt.Fprintf(w, "+ CustomResourceDefinition %s (Gateway API %s, missing: would be created)\n", c.GetName(), gatewayapi.Version)
		}
	}
	var old []objectRef
	if pruning {
		if old, err = stale(ctx, kc.metadata, ns, us); err != nil {
			return err
		}
	}
	return printDiff(ctx, applier, us, old, w)
}
