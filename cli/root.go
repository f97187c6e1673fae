package cli

import (
	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/command"
)

// NewRootCommand returns the meshctl command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshctl",
		Short: "meshctl drives a lightweight service mesh for Kubernetes",
		Long: `meshctl installs, checks and observes the meshctl service mesh.

The mesh puts a small proxy beside every meshed pod. The proxies encrypt and
authenticate traffic between pods with mutual TLS, balance requests, and report
what they see; meshctl reads it straight from them, with no Prometheus to run.

` + command.ExitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g := &globalOptions{}
	g.addFlags(root.PersistentFlags())
	root.AddCommand(newInstallCommand(g), newUpgradeCommand(g), newCheckCommand(g), newUninstallCommand(g), newInjectCommand(g), newUninjectCommand(), newIdentityCommand(g), newStatCommand(g), newEdgesCommand(g), newTapCommand(g), newTopCommand(g), newDiagnosticsCommand(g), newAuthzCommand(g), newRoutesCommand(g), newDashboardCommand(g), newVersionCommand(g))
	return root
}
