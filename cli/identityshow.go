package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/command"
)

type identityShowOptions struct {
	kube   kubeOptions
	output string
}

func newIdentityShowCommand(g *globalOptions) *cobra.Command {
	o := &identityShowOptions{}
	cmd := &cobra.Command{
		Use:   "show pod/NAME",
		Short: "Show a meshed pod's current certificate",
		Long: `Show the certificate a pod's proxy holds now: its SPIFFE ID, serial, issuer,
validity and remaining lifetime. It is read through the controller's admin API
(pods/identity in admin.meshctl.io, with your credentials: the ClusterRole
meshctl-admin-viewer grants it), which relays to the proxy over mutual TLS.`,
		Example: `  meshctl identity show pod/web-5d7ff55cf9-abcde -n demo`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			kind, name, err := parseTarget(args)
			if err != nil {
				return err
			}
			if kind != "pod" || name == "" {
				return command.Usagef("give a pod: pod/NAME")
			}
			return runIdentityShow(cmd.Context(), o, name, cmd.OutOrStdout())
		},
	}
	o.kube.use(g)
	o.kube.addNamespaceFlag(cmd.Flags(), "the pod's namespace (default: the context's)")
	addOutputFlag(cmd.Flags(), &o.output, "")
	cmd.ValidArgsFunction = completeTarget(&o.kube, "pod")
	addCompletions(cmd, &o.kube)
	return cmd
}

func runIdentityShow(ctx context.Context, o *identityShowOptions, name string, stdout io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client := kc.typed
	ns := o.kube.defaultNamespace()
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return command.NotFound(fmt.Errorf("pod %s/%s not found", ns, name))
	}
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	if !hasProxy(pod.Spec.InitContainers) {
		return fmt.Errorf("pod %s/%s has no proxy (it is not meshed)", ns, name)
	}
	id, err := readProxyIdentity(ctx, client, pod)
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	return printIdentity(stdout, o.output, ns+"/"+name, id, time.Now())
}

// printIdentity prints the certificate of a pod's proxy in format (-o),
// its remaining life counted from now.
func printIdentity(w io.Writer, format, pod string, id proxyIdentity, now time.Time) error {
	if structured(format) {
		return writeStructured(w, format, struct {
			Pod string `json:"pod"`
			proxyIdentity
		}{pod, id})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Pod:\t%s\n", pod)
	fmt.Fprintf(tw, "SPIFFE ID:\t%s\n", id.SPIFFEID)
	fmt.Fprintf(tw, "Serial:\t%s\n", id.Serial)
	fmt.Fprintf(tw, "Issuer (SHA-256):\t%s\n", id.IssuerFingerprint)
	fmt.Fprintf(tw, "Valid:\t%s → %s\n", id.NotBefore.UTC().Format(time.RFC3339), id.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Remaining:\t%s\n", id.NotAfter.Sub(now).Round(time.Second))
	for i, r := range id.TrustRootFingerprints {
		label := ""
		if i == 0 {
			label = "Trust roots (SHA-256):"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, r)
	}
	return tw.Flush()
}
