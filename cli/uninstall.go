package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

type uninstallOptions struct {
	kube    kubeOptions
	wait    bool
	timeout time.Duration
	yes     bool
	dryRun  bool
	// stdin answers the confirmation when it is a terminal.
	stdin io.Reader
}

func newUninstallCommand(g *globalOptions) *cobra.Command {
	o := &uninstallOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the control plane and everything install created",
		Long: `Remove the control plane: the admin API's APIService first (one whose service
is gone breaks discovery, and so kubectl, for everyone), then the proxy
injector's webhook (so that no new pod is sent to it), the controller's
cluster-wide RBAC (the ClusterRoles meshctl-admin-viewer and
meshctl-admin-operator included) and its RoleBinding in kube-system, the control plane's
namespace, and the trust-bundle copies in meshed namespaces; then (once the
controller is gone) the AuthorizationPolicy CRD, and with it every
AuthorizationPolicy in every namespace.

It lists all of that first (with how many AuthorizationPolicies, in which
namespaces) and asks to confirm on a terminal; elsewhere (a script) it needs
--yes. --dry-run lists it and removes nothing.

The trust anchor's key file (~/.meshctl/<context>/trust-anchor.pem) stays:
meshctl install into the same cluster reuses it.

The Gateway API CRDs (and so your HTTPRoutes) stay: other tools may share
them. Remove them yourself if nothing else uses them:

  kubectl delete crd gatewayclasses.gateway.networking.k8s.io \
    gateways.gateway.networking.k8s.io httproutes.gateway.networking.k8s.io \
    grpcroutes.gateway.networking.k8s.io referencegrants.gateway.networking.k8s.io

Pods that are meshed keep their proxies until they are re-created; their
traffic between each other stops being encrypted once their certificates
expire. To un-mesh workloads, remove the annotation and restart them:

  kubectl get deploy -n NS -o yaml | meshctl uninject - | kubectl apply -f -
  kubectl rollout restart deploy -n NS`,
		Example: `  meshctl uninstall --dry-run
  meshctl uninstall
  meshctl uninstall --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stdin = cmd.InOrStdin()
			return runUninstall(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.kube.use(g)
	cmd.Flags().BoolVar(&o.wait, "wait", true, "wait until the namespace is gone")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long --wait waits")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "remove without asking (what scripts must pass)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "list what would be removed, and remove nothing")
	return cmd
}

// removal is one object uninstall deletes.
type removal struct {
	what string
	del  func(context.Context) error
}

// uninstallPlan is what uninstall would remove, in order.
type uninstallPlan struct {
	removals []removal
	// namespace: the control plane's namespace exists.
	namespace bool
	// crd: the AuthorizationPolicy CRD exists; policies counts its objects
	// by namespace.
	crd      bool
	policies map[string]int
}

func (p *uninstallPlan) empty() bool { return len(p.removals) == 0 && !p.namespace && !p.crd }

// planUninstall lists what uninstall removes.
func planUninstall(ctx context.Context, kc *kubeClients, ns string) (*uninstallPlan, error) {
	client, dyn := kc.typed, kc.dynamic
	selector := metav1.ListOptions{LabelSelector: install.PartOfLabel + "=" + install.PartOfValue}
	p := &uninstallPlan{}
	add := func(what string, del func(context.Context) error) {
		p.removals = append(p.removals, removal{what, del})
	}
	apiServices := dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})
	services, err := apiServices.List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list the APIServices (is the cluster reachable and may you delete them?): %w", err)
	}
	for _, s := range services.Items {
		add("APIService "+s.GetName(), func(ctx context.Context) error { return apiServices.Delete(ctx, s.GetName(), metav1.DeleteOptions{}) })
	}
	hooks, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list the webhook configurations (is the cluster reachable and may you delete them?): %w", err)
	}
	for _, h := range hooks.Items {
		add("MutatingWebhookConfiguration "+h.Name, func(ctx context.Context) error {
			return client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, h.Name, metav1.DeleteOptions{})
		})
	}
	crbs, err := client.RbacV1().ClusterRoleBindings().List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list the ClusterRoleBindings: %w", err)
	}
	for _, b := range crbs.Items {
		add("ClusterRoleBinding "+b.Name, func(ctx context.Context) error {
			return client.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, metav1.DeleteOptions{})
		})
	}
	crs, err := client.RbacV1().ClusterRoles().List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list the ClusterRoles: %w", err)
	}
	for _, r := range crs.Items {
		add("ClusterRole "+r.Name, func(ctx context.Context) error {
			return client.RbacV1().ClusterRoles().Delete(ctx, r.Name, metav1.DeleteOptions{})
		})
	}
	rbs, err := client.RbacV1().RoleBindings(meshnames.AuthConfigMapNamespace).List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list the RoleBindings of %s: %w", meshnames.AuthConfigMapNamespace, err)
	}
	for _, b := range rbs.Items {
		add("RoleBinding "+b.Namespace+"/"+b.Name, func(ctx context.Context) error {
			return client.RbacV1().RoleBindings(b.Namespace).Delete(ctx, b.Name, metav1.DeleteOptions{})
		})
	}
	copies, err := client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: meshnames.TrustRootsCopyLabel + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list the trust bundle's copies: %w", err)
	}
	for _, c := range copies.Items {
		add("ConfigMap "+c.Namespace+"/"+c.Name, func(ctx context.Context) error {
			return client.CoreV1().ConfigMaps(c.Namespace).Delete(ctx, c.Name, metav1.DeleteOptions{})
		})
	}
	switch n, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); {
	case err == nil && n.Labels[install.PartOfLabel] != install.PartOfValue:
		return nil, fmt.Errorf("namespace %s is not meshctl's (no label %s=%s): uninstall deletes only a control plane's namespace; check --control-plane-namespace", ns, install.PartOfLabel, install.PartOfValue)
	case err == nil:
		p.namespace = true
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read namespace %s: %w", ns, err)
	}
	switch _, err := dyn.Resource(crdResource).Get(ctx, install.AuthorizationPolicyCRD, metav1.GetOptions{}); {
	case err == nil:
		p.crd = true
		list, err := dyn.Resource(policyapi.GroupVersionResource).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("count the AuthorizationPolicies that uninstall would delete: %w", err)
		}
		p.policies = map[string]int{}
		for _, item := range list.Items {
			p.policies[item.GetNamespace()]++
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read CRD %s: %w", install.AuthorizationPolicyCRD, err)
	}
	return p, nil
}

// print lists the plan.
func (p *uninstallPlan) print(w io.Writer, ns string) {
	for _, r := range p.removals {
		fmt.Fprintf(w, "  %s\n", r.what)
	}
	if p.namespace {
		fmt.Fprintf(w, "  Namespace %s, and everything in it (the controller, the issuer's key, the install's settings)\n", ns)
	}
	if p.crd {
		n, where := 0, make([]string, 0, len(p.policies))
		for pns, c := range p.policies {
			n += c
			where = append(where, fmt.Sprintf("%s (%d)", pns, c))
		}
		sort.Strings(where)
		line := fmt.Sprintf("  CustomResourceDefinition %s, and with it every AuthorizationPolicy: %d", install.AuthorizationPolicyCRD, n)
		if n > 0 {
			line += " in " + strings.Join(where, ", ")
		}
		fmt.Fprintln(w, line)
	}
}

func runUninstall(ctx context.Context, o *uninstallOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client, dyn := kc.typed, kc.dynamic
	plan, err := planUninstall(ctx, kc, o.kube.controlNS())
	if err != nil {
		return err
	}
	if plan.empty() {
		fmt.Fprintln(stdout, "meshctl is not installed: nothing to remove")
		return nil
	}
	if o.dryRun {
		fmt.Fprintln(stdout, "meshctl uninstall would remove:")
		plan.print(stdout, o.kube.controlNS())
		fmt.Fprintln(stdout, "Nothing was removed (dry run).")
		return nil
	}
	if !o.yes {
		if err := confirmUninstall(plan, o, stdout, stderr); err != nil {
			return err
		}
	}
	var errs []error
	deleted := 0
	del := func(what string, err error) {
		switch {
		case err == nil:
			deleted++
			fmt.Fprintf(stderr, "  deleted %s\n", what)
		case apierrors.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("delete %s: %w", what, err))
		}
	}
	for _, r := range plan.removals {
		del(r.what, r.del(ctx))
	}
	del("Namespace "+o.kube.controlNS(), client.CoreV1().Namespaces().Delete(ctx, o.kube.controlNS(), metav1.DeleteOptions{}))
	if len(errs) > 0 {
		return fmt.Errorf("uninstall is incomplete (run it again once fixed): %w", errors.Join(errs...))
	}
	// The controller goes before the policies do: it would otherwise see
	// every policy deleted and tell the proxies, which keep their last
	// policies when it is gone.
	if o.wait && deleted > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		fmt.Fprintf(stderr, "  waiting for namespace %s to go\n", o.kube.controlNS())
		if err := waitGone(wctx, client, o.kube.controlNS()); err != nil {
			return fmt.Errorf("namespace %s is still terminating (run uninstall again to finish, the AuthorizationPolicy CRD included): %w", o.kube.controlNS(), err)
		}
	}
	var crd bool
	if !o.wait && deleted > 0 {
		// Not waiting for the controller to go: the policies stay until it has.
		fmt.Fprintf(stderr, "  kept CustomResourceDefinition %s while the controller may still run: run 'meshctl uninstall' again once namespace %s is gone to remove it\n",
			install.AuthorizationPolicyCRD, o.kube.controlNS())
	} else if crd, err = deleteAuthorizationPolicyCRD(ctx, dyn); err != nil {
		return fmt.Errorf("uninstall is incomplete (run it again once fixed): %w", err)
	}
	if crd {
		deleted++
		fmt.Fprintf(stderr, "  deleted CustomResourceDefinition %s, and with it every AuthorizationPolicy\n", install.AuthorizationPolicyCRD)
	}
	if deleted == 0 {
		fmt.Fprintln(stdout, "meshctl is not installed: nothing to remove")
		return nil
	}
	fmt.Fprintln(stdout, "✔ meshctl uninstalled. Meshed pods keep their proxies until re-created: see 'meshctl uninstall --help' to un-mesh them.")
	if file := defaultAnchorFile(o.kube.contextName()); anchorFileOf(ctx, client, file) {
		fmt.Fprintf(stdout, "  The trust anchor's key stays in %s: meshctl install into this cluster reuses it. Keep it safe, or delete it if you will not install again.\n", file)
	}
	gateway := "The Gateway API CRDs, if any, were left in place"
	if existing, err := installedCRDs(ctx, kc.metadata); err == nil {
		names := gatewayCRDs(existing)
		if len(names) == 0 {
			return nil
		}
		gateway = fmt.Sprintf("%d Gateway API CRDs were left in place (%s)", len(names), strings.Join(names, ", "))
	}
	fmt.Fprintf(stdout, "  %s: other tools may share them; see 'meshctl uninstall --help' to remove them.\n", gateway)
	return nil
}

// anchorFileOf says whether file is a trust anchor file marked as the
// cluster's.
func anchorFileOf(ctx context.Context, client kubernetes.Interface, file string) bool {
	m, err := readMark(file)
	if err != nil {
		return false
	}
	uid, err := clusterUID(ctx, client)
	return err == nil && m.ClusterUID == uid
}

// gatewayCRDs picks the Gateway API's CRDs (any channel) out of a cluster's,
// sorted.
func gatewayCRDs(existing map[string]string) []string {
	var out []string
	for name := range existing {
		if strings.HasSuffix(name, "."+gatewayapi.Group) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func waitGone(ctx context.Context, client kubernetes.Interface, ns string) error {
	return poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
}

// confirmUninstall shows the plan and asks for "yes" on a terminal;
// elsewhere it refuses, asking for --yes.
func confirmUninstall(plan *uninstallPlan, o *uninstallOptions, stdout, stderr io.Writer) error {
	f, ok := o.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || !isTerminal(stdout) {
		return command.Usagef("uninstall removes the control plane and every AuthorizationPolicy in the cluster: pass --yes to confirm (--dry-run lists what it removes)")
	}
	fmt.Fprintln(stderr, "meshctl uninstall will remove:")
	plan.print(stderr, o.kube.controlNS())
	fmt.Fprint(stderr, "Type yes to remove all of this: ")
	line, _ := bufio.NewReader(f).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errors.New("not confirmed: nothing was removed")
	}
	return nil
}
