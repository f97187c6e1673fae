package cli

import (
	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/command"
)

func newUpgradeCommand(g *globalOptions) *cobra.Command {
	o := &installOptions{upgrade: true}
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the installed control plane to this meshctl, keeping its settings",
		Long: `Upgrade the installed control plane to this meshctl's version, or change its
settings, in place.

The settings the control plane was installed with (--ha,
--default-inbound-policy, --cluster-networks, --registry and the others; see
'meshctl install --help') are kept in the cluster, in the ConfigMap
meshctl-install-settings of the control plane's namespace. Upgrade reuses every
one of them that is not given again: a bare 'meshctl upgrade' changes only the
version. A flag given replaces its setting from then on (--ha=false turns HA
off). The images follow this meshctl's version unless --image-tag is given.
The issuer, the trust roots and the webhook certificate are kept as they are
(the --identity-* flags are refused: 'meshctl identity' rotates them).

What the new version no longer renders (the PodDisruptionBudget once --ha is
off, say) is deleted: only objects labelled app.kubernetes.io/part-of=meshctl
that meshctl itself applied, never a CRD.

An older meshctl does not replace a newer one's control plane unless --force.

--dry-run prints what would change, and changes nothing: each object that
would change as a unified diff against the cluster's (computed by the API
server's own dry run, so defaults do not show as changes; Secrets' values as
digests), then what would be deleted. -o yaml|json prints the manifests.

'meshctl install' run against an installed control plane does the same.`,
		Example: `  meshctl upgrade --dry-run
  meshctl upgrade
  meshctl upgrade --ha
  meshctl upgrade --default-inbound-policy all-authenticated`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range identityFlags {
				if cmd.Flags().Changed(name) {
					return command.Usagef("--%s: upgrade keeps the mesh's identity; change it without downtime with 'meshctl identity rotate-issuer' or 'meshctl identity rotate-trust-anchor'", name)
				}
			}
			return runInstall(cmd.Context(), o, cmd.Flags(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd.Flags(), g)
	for _, name := range identityFlags {
		_ = cmd.Flags().MarkHidden(name)
	}
	cmd.Flags().Lookup("dry-run").Usage = "print what would change (diffs against the cluster) instead of changing it"
	return cmd
}

// identityFlags are install's flags that bring or place the mesh's
// identity: upgrade keeps it, so it refuses them.
var identityFlags = []string{"identity-trust-anchors-file", "identity-issuer-certificate-file", "identity-issuer-key-file", "trust-anchor-file"}
