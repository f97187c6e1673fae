package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
	"github.com/meshctl/meshctl/internal/meshnames"
)

type uninstallOptions struct {
	kube      kubeOptions
	namespace string
	wait      bool
	timeout   time.Duration
}

func newUninstallCommand() *cobra.Command {
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
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUninstall(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.kube.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.namespace, "control-plane-namespace", meshnames.Namespace, "namespace of the control plane")
	cmd.Flags().BoolVar(&o.wait, "wait", true, "wait until the namespace is gone")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long --wait waits")
	return cmd
}

func runUninstall(ctx context.Context, o *uninstallOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client, dyn := kc.typed, kc.dynamic
	selector := metav1.ListOptions{LabelSelector: install.PartOfLabel + "=" + install.PartOfValue}
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
	apiServices := dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})
	services, err := apiServices.List(ctx, selector)
	if err != nil {
		return fmt.Errorf("list the APIServices (is the cluster reachable and may you delete them?): %w", err)
	}
	for _, s := range services.Items {
		del("APIService "+s.GetName(), apiServices.Delete(ctx, s.GetName(), metav1.DeleteOptions{}))
	}
	hooks, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, selector)
	if err != nil {
		return fmt.Errorf("list the webhook configurations (is the cluster reachable and may you delete them?): %w", err)
	}
	for _, h := range hooks.Items {
		del("MutatingWebhookConfiguration "+h.Name, client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, h.Name, metav1.DeleteOptions{}))
	}
	crbs, err := client.RbacV1().ClusterRoleBindings().List(ctx, selector)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, b := range crbs.Items {
			del("ClusterRoleBinding "+b.Name, client.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, metav1.DeleteOptions{}))
		}
	}
	crs, err := client.RbacV1().ClusterRoles().List(ctx, selector)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, r := range crs.Items {
			del("ClusterRole "+r.Name, client.RbacV1().ClusterRoles().Delete(ctx, r.Name, metav1.DeleteOptions{}))
		}
	}
	rbs, err := client.RbacV1().RoleBindings(meshnames.AuthConfigMapNamespace).List(ctx, selector)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, b := range rbs.Items {
			del("RoleBinding "+b.Namespace+"/"+b.Name, client.RbacV1().RoleBindings(b.Namespace).Delete(ctx, b.Name, metav1.DeleteOptions{}))
		}
	}
	copies, err := client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: meshnames.TrustRootsCopyLabel + "=true"})
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, c := range copies.Items {
			del("ConfigMap "+c.Namespace+"/"+c.Name, client.CoreV1().ConfigMaps(c.Namespace).Delete(ctx, c.Name, metav1.DeleteOptions{}))
		}
	}
	del("Namespace "+o.namespace, client.CoreV1().Namespaces().Delete(ctx, o.namespace, metav1.DeleteOptions{}))
	if len(errs) > 0 {
		return fmt.Errorf("uninstall is incomplete (run it again once fixed): %w", errors.Join(errs...))
	}
	// The controller goes before the policies do: it would otherwise see
	// every policy deleted and tell the proxies, which keep their last
	// policies when it is gone.
	if o.wait && deleted > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		fmt.Fprintf(stderr, "  waiting for namespace %s to go\n", o.namespace)
		if err := waitGone(wctx, client, o.namespace); err != nil {
			return fmt.Errorf("namespace %s is still terminating (run uninstall again to finish, the AuthorizationPolicy CRD included): %w", o.namespace, err)
		}
	}
	var crd bool
	if !o.wait && deleted > 0 {
		// Not waiting for the controller to go: the policies stay until it has.
		fmt.Fprintf(stderr, "  kept CustomResourceDefinition %s while the controller may still run: run 'meshctl uninstall' again once namespace %s is gone to remove it\n",
			install.AuthorizationPolicyCRD, o.namespace)
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
