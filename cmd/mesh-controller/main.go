// Command mesh-controller is the meshctl control plane: identity, destination
// and proxy-injector services in one process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-controller",
		Short: "mesh-controller is the meshctl control plane",
		Long: `mesh-controller issues workload certificates, tells proxies where their
destinations are, and injects the proxy into pods that ask for it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), version.Command("mesh-controller"))
	return root
}
