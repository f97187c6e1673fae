// Command mesh-controller is the meshctl control plane: identity, destination
// and proxy-injector services in one process.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/logging"
)

func main() {
	root := command.Root("mesh-controller", "mesh-controller is the meshctl control plane",
		`mesh-controller issues workload certificates, tells proxies where their
destinations are, and injects the proxy into pods that ask for it.`,
		newRunCommand())
	root.PersistentPreRunE = routeKlog
	os.Exit(command.Execute(root))
}

// routeKlog sends klog's lines (client-go's: leader election, reflectors)
// through a logger of the command's --log-level and --log-format, the same
// JSON or text lines on stderr as the controller's own, rather than klog's
// format.
func routeKlog(cmd *cobra.Command, _ []string) error {
	level, format := cmd.Flags().Lookup("log-level"), cmd.Flags().Lookup("log-format")
	if level == nil || format == nil {
		return nil // a command without a logger (version)
	}
	log, err := logging.New(level.Value.String(), format.Value.String())
	if err != nil {
		return err
	}
	klog.SetSlogLogger(log)
	return nil
}
