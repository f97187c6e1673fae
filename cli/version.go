package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

type versionOptions struct {
	kube       kubeOptions
	clientOnly bool
	output     string
}

// versions is what version prints.
type versions struct {
	Client string `json:"client_version"`
	// ControlPlane is "" with --client.
	ControlPlane string `json:"control_plane_version,omitempty"`
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	o := &versionOptions{}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's and the control plane's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			return runVersion(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.kube.use(g)
	cmd.Flags().BoolVar(&o.clientOnly, "client", false, "print only the client's version")
	addOutputFlag(cmd.Flags(), &o.output, "")
	return cmd
}

func runVersion(ctx context.Context, o *versionOptions, stdout io.Writer) error {
	v := versions{Client: version.Version}
	var err error
	if !o.clientOnly {
		v.ControlPlane, err = controlPlaneVersion(ctx, &o.kube, o.kube.controlNS())
	}
	if werr := writeVersions(stdout, o.output, v); werr != nil {
		return werr
	}
	return err
}

func writeVersions(w io.Writer, format string, v versions) error {
	if structured(format) {
		return writeStructured(w, format, v)
	}
	fmt.Fprintf(w, "Client version: %s\n", v.Client)
	if v.ControlPlane != "" {
		fmt.Fprintf(w, "Control plane version: %s\n", v.ControlPlane)
	}
	return nil
}

// controlPlaneVersion reads the controller Deployment's version label, or
// says why it cannot: with an error when the cluster cannot be read (exit
// status 1) or has no control plane (3).
func controlPlaneVersion(ctx context.Context, kube *kubeOptions, ns string) (string, error) {
	kc, err := kube.clients()
	if err != nil {
		return "unavailable", fmt.Errorf("the control plane's version: %w", err)
	}
	d, err := kc.typed.AppsV1().Deployments(ns).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "not installed", command.NotFound(fmt.Errorf("no control plane in namespace %s (Deployment %s): not installed, or --control-plane-namespace", ns, meshnames.ServiceName))
	}
	if err != nil {
		return "unavailable", fmt.Errorf("the control plane's version: %w", err)
	}
	if v := d.Labels[install.VersionLabel]; v != "" {
		return v, nil
	}
	return "unknown (the Deployment has no " + install.VersionLabel + " label)", nil
}
