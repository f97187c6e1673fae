package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/controller/trustbundle"
	"github.com/meshctl/meshctl/install"
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
		Long: `Remove the control plane: the proxy injector's webhook first (so that no new pod
is sent to it), the controller's cluster-wide RBAC, the control plane's
namespace, and the trust-bundle copies in meshed namespaces.

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
	cmd.Flags().StringVar(&o.namespace, "control-plane-namespace", "meshctl", "namespace of the control plane")
	cmd.Flags().BoolVar(&o.wait, "wait", true, "wait until the namespace is gone")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long --wait waits")
	return cmd
}

func runUninstall(ctx context.Context, o *uninstallOptions, stdout, stderr io.Writer) error {
	_, client, err := o.kube.client()
	if err != nil {
		return err
	}
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
	copies, err := client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: trustbundle.CopyLabel + "=true"})
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
	if deleted == 0 {
		fmt.Fprintln(stdout, "meshctl is not installed: nothing to remove")
		return nil
	}
	if o.wait {
		wctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		fmt.Fprintf(stderr, "  waiting for namespace %s to go\n", o.namespace)
		if err := waitGone(wctx, client, o.namespace); err != nil {
			return fmt.Errorf("namespace %s is still terminating: %w", o.namespace, err)
		}
	}
	fmt.Fprintln(stdout, "✔ meshctl uninstalled. Meshed pods keep their proxies until re-created: see 'meshctl uninstall --help' to un-mesh them.")
	return nil
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
